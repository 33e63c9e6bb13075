//! fim.v1, the gRPC API: generated code, conversions from engine types, the server, roles and
//! transports. The engine knows nothing of gRPC; this crate only uses its public handle.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("fim.v1");

    /// The encoded descriptor set, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("fim_v1_descriptor");
}

pub mod client;
