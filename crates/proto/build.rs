fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../../proto");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        // The client API's descriptors, for server reflection.
        .file_descriptor_set_path(out.join("shoal_descriptor.bin"))
        .compile_protos(
            &[
                "../../proto/raft.proto",
                "../../proto/shard.proto",
                "../../proto/shoal.proto",
            ],
            &["../../proto"],
        )?;
    Ok(())
}
