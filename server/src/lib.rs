pub mod proto {
    pub mod taskloom {
        pub mod v1 {
            tonic::include_proto!("taskloom.v1");
        }
    }
    pub mod google {
        pub mod rpc {
            tonic::include_proto!("google.rpc");
        }
    }
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("taskloom_descriptor");
}
