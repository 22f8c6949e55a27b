//! Code generated from `proto/` by `build.rs`: messages, clients, servers.

#![allow(
    missing_docs,
    clippy::doc_lazy_continuation,
    clippy::doc_overindented_list_items
)]

/// `openoes.credit.v1`.
pub mod credit {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("openoes.credit.v1");
    }
}

/// `openoes.pledge.v1`.
pub mod pledge {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("openoes.pledge.v1");
    }
}

/// `openoes.settlement.v1`.
pub mod settlement {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("openoes.settlement.v1");
    }
}

/// `openoes.quote.v1`.
pub mod quote {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("openoes.quote.v1");
    }
}

/// `openoes.attestation.v1`.
pub mod attestation {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("openoes.attestation.v1");
    }
}

/// Encoded descriptors of every file above, served by reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("openoes_descriptor");
