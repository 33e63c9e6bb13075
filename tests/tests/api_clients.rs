//! Standard gRPC clients on the local socket. grpcurl `-unix`, grpc-java and Python grpcio send
//! the socket path (or its %-encoding) as the HTTP/2 `:authority`; upstream h2 reset such
//! streams with PROTOCOL_ERROR (see vendor/README.md). Both reflection versions are served,
//! since clients differ in which one they ask.
use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    process::Command,
    time::Duration,
};

use fim_tests::engine::{Engine, Workspace};

/// HTTP/2 frame types (RFC 9113 §6).
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = payload.len() as u32;
    let mut out = length.to_be_bytes()[1..].to_vec();
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK "literal header field without indexing, new name" with plain (not Huffman)
/// strings: the name and value go on the wire byte for byte, so any authority can be sent.
fn literal(block: &mut Vec<u8>, name: &str, value: &str) {
    for text in [name, value] {
        assert!(text.len() < 127, "one-byte HPACK length");
        block.push(text.len() as u8);
        block.extend_from_slice(text.as_bytes());
    }
}

fn header_block(authority: &str) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/grpc.health.v1.Health/Check"),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        block.push(0x00);
        literal(&mut block, name, value);
    }
    block
}

/// Sends one Health/Check call over raw HTTP/2 with the given `:authority`; returns the
/// frames (type, flags, payload) the server sent on stream 1 until it ended or reset it.
fn raw_health_check(socket: &std::path::Path, authority: &str) -> Vec<(u8, u8, Vec<u8>)> {
    let mut stream = UnixStream::connect(socket).expect("connect to the API socket");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    out.extend(frame(HEADERS, END_HEADERS, 1, &header_block(authority)));
    // An empty HealthCheckRequest: uncompressed, zero length.
    out.extend(frame(DATA, END_STREAM, 1, &[0, 0, 0, 0, 0]));
    stream.write_all(&out).expect("send the request");
    let mut frames = Vec::new();
    loop {
        let mut head = [0u8; 9];
        stream.read_exact(&mut head).expect("read a frame header");
        let length = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; length];
        stream
            .read_exact(&mut payload)
            .expect("read a frame payload");
        if kind == SETTINGS && flags & 0x1 == 0 {
            // Acknowledge the server's settings, as a client must.
            stream
                .write_all(&frame(SETTINGS, 0x1, 0, &[]))
                .expect("ack settings");
        }
        if kind == GOAWAY {
            frames.push((kind, flags, payload));
            return frames;
        }
        if id != 1 {
            continue;
        }
        let ended = kind == RST_STREAM || flags & END_STREAM != 0;
        frames.push((kind, flags, payload));
        if ended {
            return frames;
        }
    }
}

#[test]
fn a_socket_path_authority_gets_a_normal_reply() {
    let workspace = Workspace::new("api-authority");
    let engine = Engine::start(&workspace);
    for authority in ["/run/fim/fim.sock", "%2Frun%2Ffim%2Ffim.sock", "localhost"] {
        let frames = raw_health_check(&workspace.socket, authority);
        assert!(
            !frames.iter().any(|(kind, _, _)| *kind == RST_STREAM),
            "authority {authority:?}: the stream was reset: {frames:?}"
        );
        let data: Vec<&Vec<u8>> = frames
            .iter()
            .filter(|(kind, _, _)| *kind == DATA)
            .map(|(_, _, payload)| payload)
            .collect();
        // One gRPC message: HealthCheckResponse { status: SERVING (1) }.
        assert_eq!(
            data,
            vec![&vec![0, 0, 0, 0, 2, 0x08, 0x01]],
            "authority {authority:?}: {frames:?}"
        );
        assert!(
            frames
                .last()
                .is_some_and(|(kind, flags, _)| *kind == HEADERS && flags & END_STREAM != 0),
            "authority {authority:?}: the call ends with trailers: {frames:?}"
        );
    }
    engine.stop();
}

/// Lists services by reflection with Python grpcio, on the default authority and on the
/// socket path as authority, asking v1alpha (what grpcio-reflection's client speaks).
const PYTHON_LIST_SERVICES: &str = r#"
import sys
import grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

socket = sys.argv[1]
for options in ([], [("grpc.default_authority", socket)]):
    with grpc.insecure_channel("unix:" + socket, options=options) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        for reply in stub.ServerReflectionInfo(iter([request]), timeout=10):
            names = sorted(s.name for s in reply.list_services_response.service)
            print(repr(options), " ".join(names))
"#;

#[test]
fn python_grpcio_lists_services_by_reflection() {
    let probe = Command::new("python3")
        .args(["-c", "import grpc, grpc_reflection"])
        .output()
        .expect("run python3");
    assert!(
        probe.status.success(),
        "python3 cannot import grpcio: `cargo xtask setup` installs it \
         (pip install grpcio grpcio-reflection): {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let workspace = Workspace::new("api-python");
    let engine = Engine::start(&workspace);
    let output = Command::new("python3")
        .args(["-c", PYTHON_LIST_SERVICES])
        .arg(&workspace.socket)
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the Python client failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    for line in lines {
        // Each reflection version lists the descriptors it was built with: the API and
        // itself (v1 is covered by api_requests' reflection test).
        for service in ["fim.v1.Fim", "grpc.reflection.v1alpha.ServerReflection"] {
            assert!(
                line.split(' ').any(|name| name == service),
                "{service} missing: {line}"
            );
        }
    }
    engine.stop();
}
