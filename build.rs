//! Generates the gRPC code for every `.proto` under `proto/` and the file
//! descriptor set that server reflection serves.
//!
//! protoc comes from the `protoc-bin-vendored` crate, so a build needs no
//! system protoc: a fresh machine with cargo is enough.

use std::{
    io,
    path::{Path, PathBuf},
};

const PROTOS: &[&str] = &[
    "proto/openoes/credit/v1/credit.proto",
    "proto/openoes/pledge/v1/pledge.proto",
    "proto/openoes/settlement/v1/settlement.proto",
    "proto/openoes/quote/v1/quote.proto",
    "proto/openoes/attestation/v1/attestation.proto",
];

fn main() -> io::Result<()> {
    let protoc = protoc_bin_vendored::protoc_bin_path().map_err(io::Error::other)?;
    let well_known = protoc_bin_vendored::include_path().map_err(io::Error::other)?;
    let out_dir = PathBuf::from(
        std::env::var_os("OUT_DIR").ok_or_else(|| io::Error::other("OUT_DIR unset"))?,
    );

    let protos: Vec<&Path> = PROTOS.iter().map(Path::new).collect();
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);

    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("openoes_descriptor.bin"))
        .compile_with_config(config, &protos, &[Path::new("proto"), well_known.as_path()])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
