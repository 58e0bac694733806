//! gRPC-Web's transcoding, piece by piece and under arbitrary input.

use super::*;

#[test]
fn json_messages_become_protobuf_and_back() {
    let (input, output) = method_of("/ferrymesh.catalog.v1.CatalogService/GetProduct").unwrap();
    let mut de = serde_json::Deserializer::from_str(r#"{"product_id": "mug"}"#);
    let message = DynamicMessage::deserialize(input, &mut de).unwrap();
    assert!(!message.encode_to_vec().is_empty());
    let json = to_json(&output, &[]).unwrap();
    let text = String::from_utf8(json).unwrap();
    assert!(text.starts_with('{'), "{text}");
}

#[test]
fn unknown_methods_are_unimplemented() {
    let status = method_of("/ferrymesh.catalog.v1.CatalogService/Nope").unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented);
    assert!(status.message().contains("not a method"), "{}", status.message());
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

fn web_request(body: Vec<u8>) -> Request<Body> {
    Request::post("/ferrymesh.catalog.v1.CatalogService/GetProduct")
        .header(header::CONTENT_TYPE, GRPC_WEB_JSON)
        .body(Body::new(http_body_util::Full::new(Bytes::from(body))))
        .unwrap()
}

proptest::proptest! {
    /// Whatever a browser sends as a JSON call is encoded or refused
    /// as INVALID_ARGUMENT or RESOURCE_EXHAUSTED, never a panic.
    #[test]
    fn any_json_call_body_is_encoded_or_refused(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64), json in "[ -~]{0,40}") {
        let mut framed = vec![0u8];
        framed.extend_from_slice(&u32::try_from(json.len()).unwrap().to_be_bytes());
        framed.extend_from_slice(json.as_bytes());
        for candidate in [body, framed] {
            match runtime().block_on(to_proto(web_request(candidate), 48, std::time::Duration::from_secs(1))) {
                Ok((request, _)) => {
                    let bytes = runtime().block_on(request.into_body().collect()).unwrap().to_bytes();
                    proptest::prop_assert!(bytes.is_empty() || bytes[0] == 0);
                }
                Err(status) => proptest::prop_assert!(matches!(
                    status.code(),
                    tonic::Code::InvalidArgument | tonic::Code::ResourceExhausted
                ), "{status:?}"),
            }
        }
    }

    /// Answers cut anywhere are rewritten whole, or end with a status.
    #[test]
    fn answers_split_anywhere_are_rewritten_whole(cut in 0usize..40, garbage in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..20)) {
        let (_, output) = method_of("/ferrymesh.catalog.v1.CatalogService/GetProduct").unwrap();
        let mut answer = Vec::new();
        answer.push(0u8);
        answer.extend_from_slice(&0u32.to_be_bytes());
        answer.push(TRAILERS);
        let trailer = b"grpc-status:0\r\n";
        answer.extend_from_slice(&u32::try_from(trailer.len()).unwrap().to_be_bytes());
        answer.extend_from_slice(trailer);
        answer.extend_from_slice(&garbage);
        let cut = cut.min(answer.len());
        let (a, b) = answer.split_at(cut);
        let chunks = vec![Ok::<_, Status>(Frame::data(Bytes::copy_from_slice(a))), Ok(Frame::data(Bytes::copy_from_slice(b)))];
        let inner = Body::new(http_body_util::StreamBody::new(futures_util::stream::iter(chunks)));
        let out = runtime().block_on(JsonAnswers::new(inner, output).collect());
        let bytes = out.unwrap().to_bytes();
        // The message first, as JSON, whatever follows it.
        proptest::prop_assert!(bytes.len() >= 7 && bytes[0] == 0 && bytes[5] == b'{', "{:?}", bytes);
    }
}

#[test]
fn grpc_messages_are_percent_encoded() {
    assert_eq!(percent_encoding_lite("50% é"), "50%25 %C3%A9");
}
