//! Compiles proto/fim/v1/fim.proto and proto/fim/collector/v1/collector.proto with protox
//! (pure Rust): no system protoc is needed.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(["fim/v1/fim.proto"], ["proto"])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    // Server reflection serves this, so grpcurl works without the .proto file.
    std::fs::write(
        out_dir.join("fim_v1_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    let collector = protox::compile(["fim/collector/v1/collector.proto"], ["proto"])?;
    std::fs::write(
        out_dir.join("fim_collector_v1_descriptor.bin"),
        prost::Message::encode_to_vec(&collector),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(collector)?;
    Ok(())
}
