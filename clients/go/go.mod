module openoes.dev/clients/go

// go 1.16 keeps the module graph unpruned, so only the two direct
// dependencies are listed: that is what lets vendor-debian.sh vendor
// Debian's packages (whose versions of x/net, x/sys, genproto, ... have no
// exact upstream tag) without naming versions it cannot vouch for. Online,
// `go mod tidy` resolves the rest from the proxy as usual.
go 1.16

require (
	google.golang.org/grpc v1.33.3
	google.golang.org/protobuf v1.28.1
)
