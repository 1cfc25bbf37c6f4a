//! The codec every generated client and server uses: protobuf exactly as tonic-prost encodes
//! it, with each call's buffers starting at 1 KiB instead of 8 KiB. Most calls carry a few
//! hundred bytes, and a watch stream keeps its outgoing buffer for as long as it is open, so
//! the default would be most of an idle stream's memory; a larger message grows the buffer.

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::ProstCodec;

/// Initial size of a call's encoding and decoding buffers.
pub const BUFFER_BYTES: usize = 1024;
/// Bytes of encoded messages after which a stream hands them to the transport. A stream with
/// several messages ready encodes them into one buffer up to this size, and keeps that buffer
/// for as long as it is open: tonic's 32 KiB let every watcher of a room of a thousand keep
/// ~32 KiB after the burst of joining (the presence pages arrive together). At 2 KiB a stream
/// still sends a burst of small events in few frames.
pub const YIELD_BYTES: usize = 2 * 1024;

/// Protobuf with small initial buffers; see the module.
#[derive(Debug)]
pub struct ProtoCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for ProtoCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for ProtoCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = <ProstCodec<T, U> as Codec>::Encoder;
    type Decoder = <ProstCodec<T, U> as Codec>::Decoder;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::new(BUFFER_BYTES, YIELD_BYTES))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(BufferSettings::new(BUFFER_BYTES, YIELD_BYTES))
    }
}
