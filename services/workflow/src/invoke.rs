//! Task calls by method name: the request JSON is turned into the method's
//! input message from the mesh's descriptor set (prost-reflect), sent over
//! the kit's client (deadline, trace context, correlation id), and the
//! response turned back into JSON.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut};
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};
use serde_json::Value;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};

use crate::asl::Methods;
use crate::engine::{Invoker, TaskCall};
use crate::errors::Failure;
use kit::client::Upstream;
use kit::rpc_telemetry::{CallContext, in_call};

/// The descriptors of every contract of the mesh.
pub fn every_contract() -> Result<DescriptorPool, prost_reflect::DescriptorError> {
    DescriptorPool::decode(crate::pb::EVERY_DESCRIPTOR_SET)
}

/// Resolves Task resources against the contracts.
#[derive(Debug, Clone)]
pub struct ContractMethods {
    pool: DescriptorPool,
}

impl ContractMethods {
    /// Over a descriptor pool.
    pub fn new(pool: DescriptorPool) -> Self {
        ContractMethods { pool }
    }

    fn method(&self, path: &str) -> Option<prost_reflect::MethodDescriptor> {
        let (service, method) = path.trim_start_matches('/').split_once('/')?;
        self.pool
            .get_service_by_name(service)?
            .methods()
            .find(|m| m.name() == method)
    }
}

impl Methods for ContractMethods {
    fn resolve(&self, resource: &str) -> Result<String, String> {
        let Some(name) = resource.strip_prefix("grpc:") else {
            return Err(format!(
                "Resource {resource:?} must name a gRPC method as \"grpc:package.Service/Method\", e.g. \"grpc:ferrymesh.catalog.v1.CatalogService/GetProduct\""
            ));
        };
        let path = format!("/{name}");
        let method = self.method(&path).ok_or_else(|| {
            format!("Resource {resource:?} names no method of the mesh's contracts; see `grpcurl list` on each service")
        })?;
        if method.is_client_streaming() || method.is_server_streaming() {
            return Err(format!(
                "Resource {resource:?} is a streaming method; a Task calls unary methods only"
            ));
        }
        Ok(path)
    }
}

/// Calls task methods over the mesh.
#[derive(Debug, Clone)]
pub struct GrpcInvoker {
    methods: ContractMethods,
    upstreams: HashMap<String, Upstream>,
}

impl GrpcInvoker {
    /// `endpoints` maps a package (`ferrymesh.catalog.v1`) to its address.
    pub fn new(
        pool: DescriptorPool,
        endpoints: &[(String, String)],
        tls: Option<std::sync::Arc<kit::tls::MeshTls>>,
    ) -> Result<Self, kit::client::ClientError> {
        let mut upstreams = HashMap::new();
        for (package, uri) in endpoints {
            // The task's TimeoutSeconds caps each call through the call context.
            upstreams.insert(
                package.clone(),
                Upstream::with_tls(uri, Duration::from_secs(3600), tls.as_ref())?,
            );
        }
        Ok(GrpcInvoker {
            methods: ContractMethods::new(pool),
            upstreams,
        })
    }
}

impl Invoker for GrpcInvoker {
    fn invoke(&self, call: TaskCall) -> Pin<Box<dyn Future<Output = Result<Value, Failure>> + Send>> {
        let this = self.clone();
        Box::pin(async move {
            let method = this.methods.method(&call.method).ok_or_else(|| {
                Failure::runtime(format!("{} is not a method of the contracts", call.method))
            })?;
            let package = method.parent_service().package_name().to_string();
            let upstream = this.upstreams.get(&package).cloned().ok_or_else(|| {
                Failure::new(
                    "UNAVAILABLE",
                    format!("no endpoint is configured for {package}; pass --endpoint {package}=URL"),
                )
            })?;
            let request = DynamicMessage::deserialize(method.input(), call.payload.clone()).map_err(|e| {
                Failure::new(
                    "INVALID_ARGUMENT",
                    format!(
                        "the task's request does not fit {}: {e}",
                        method.input().full_name()
                    ),
                )
            })?;
            let mut grpc = tonic::client::Grpc::new(upstream);
            let path = http::uri::PathAndQuery::try_from(call.method.as_str())
                .map_err(|e| Failure::runtime(format!("bad method path: {e}")))?;
            let codec = DynamicCodec {
                output: method.output(),
            };
            let context = CallContext {
                correlation_id: call.correlation_id.clone(),
                deadline: Some(Instant::now() + call.timeout),
            };
            let mut request = tonic::Request::new(request);
            if let Ok(value) = call.idempotency_id.parse() {
                request.metadata_mut().insert("idempotency-key", value);
            }
            let sent = in_call(context, async move {
                grpc.ready()
                    .await
                    .map_err(|e| Status::unavailable(format!("cannot reach {package}: {e}")))?;
                grpc.unary(request, path, codec).await
            })
            .await;
            match sent {
                Ok(response) => {
                    let options = SerializeOptions::new()
                        .skip_default_fields(false)
                        .use_proto_field_name(true);
                    response
                        .into_inner()
                        .serialize_with_options(serde_json::value::Serializer, &options)
                        .map_err(|e| Failure::runtime(format!("the response could not be read as JSON: {e}")))
                }
                Err(status) if status.code() == Code::DeadlineExceeded => Err(Failure::new(
                    "States.Timeout",
                    format!(
                        "{} did not answer within {:?}: {}",
                        call.method,
                        call.timeout,
                        status.message()
                    ),
                )),
                Err(status) => Err(Failure::from_status(&status)),
            }
        })
    }
}

/// Encodes dynamic requests and decodes responses of a known type.
#[derive(Debug, Clone)]
struct DynamicCodec {
    output: MessageDescriptor,
}

impl Codec for DynamicCodec {
    type Encode = DynamicMessage;
    type Decode = DynamicMessage;
    type Encoder = DynamicEncoder;
    type Decoder = DynamicDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        DynamicEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        DynamicDecoder(self.output.clone())
    }
}

#[derive(Debug)]
struct DynamicEncoder;

impl Encoder for DynamicEncoder {
    type Item = DynamicMessage;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        let bytes = item.encode_to_vec();
        dst.put_slice(&bytes);
        Ok(())
    }
}

#[derive(Debug)]
struct DynamicDecoder(MessageDescriptor);

impl Decoder for DynamicDecoder {
    type Item = DynamicMessage;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Self::Error> {
        let bytes = src.copy_to_bytes(src.remaining());
        DynamicMessage::decode(self.0.clone(), bytes)
            .map(Some)
            .map_err(|e| Status::internal(format!("undecodable response: {e}")))
    }
}
