//! The protobuf codec of every `taskloom.v1` service (set in `build.rs`):
//! tonic-prost's, except that a message that does not decode — malformed
//! bytes, a string that is not UTF-8, nesting past prost's recursion limit
//! — is the caller's fault and answers `INVALID_ARGUMENT` with prost's
//! description, where tonic-prost answers `INTERNAL`. (The clients in
//! `taskloom-proto` use tonic-prost's codec.)

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

use super::ApiError;

/// Response bodies go out in chunks of about 16 KiB (tonic's default is
/// 32 KiB): one chunk is what a stream whose client stopped reading keeps
/// queued in HTTP/2, and HTTP/2 frames carry 16 KiB each anyway.
const ENCODE_BUFFER_BYTES: usize = 8 * 1024;
const ENCODE_YIELD_BYTES: usize = 16 * 1024;

/// Encodes `T`, decodes `U`.
#[derive(Debug, Clone)]
pub struct ProstCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for ProstCodec<T, U> {
    fn default() -> Self {
        ProstCodec(PhantomData)
    }
}

impl<T, U> Codec for ProstCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::new(ENCODE_BUFFER_BYTES, ENCODE_YIELD_BYTES))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder(PhantomData)
    }
}

/// Decodes `U`; a decode error is `INVALID_ARGUMENT`.
#[derive(Debug, Clone)]
pub struct ProstDecoder<U>(PhantomData<U>);

impl<U: Message + Default> Decoder for ProstDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(|error| {
            let type_name = std::any::type_name::<U>();
            let message = type_name.rsplit("::").next().unwrap_or(type_name);
            Status::from(ApiError::Undecodable(format!(
                "the request does not decode as a {message}: {error}"
            )))
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}
