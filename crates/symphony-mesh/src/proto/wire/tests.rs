use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed};

use super::*;

fn node_id() -> impl Strategy<Value = NodeId> {
    any::<[u8; 32]>().prop_map(NodeId::from_bytes)
}

fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(Ipv4Addr::from(ip).into(), port)),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(Ipv6Addr::from(ip).into(), port)),
    ]
}

fn peer() -> impl Strategy<Value = PeerAddr> {
    (node_id(), socket_addr()).prop_map(|(id, addr)| PeerAddr::new(id, addr))
}

fn peers() -> impl Strategy<Value = Vec<PeerAddr>> {
    prop::collection::vec(peer(), 0..=MAX_SHUFFLE_NODES)
}

fn topic() -> impl Strategy<Value = Topic> {
    // ASCII up to the byte limit, and multi-byte UTF-8 (at most 4 bytes per char).
    prop_oneof!["[a-z0-9/._-]{1,128}", "\\PC{1,32}"].prop_map(|name| Topic::new(&name).unwrap())
}

fn message_id() -> impl Strategy<Value = MessageId> {
    (node_id(), any::<u64>()).prop_map(|(origin, seq)| MessageId { origin, seq })
}

fn payload() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..512).prop_map(Bytes::from)
}

fn membership() -> impl Strategy<Value = MembershipMessage> {
    prop_oneof![
        socket_addr().prop_map(|addr| MembershipMessage::Join { addr }),
        (peer(), any::<u8>())
            .prop_map(|(joiner, ttl)| MembershipMessage::ForwardJoin { joiner, ttl }),
        (socket_addr(), any::<bool>()).prop_map(|(addr, high)| MembershipMessage::Neighbor {
            addr,
            priority: if high { Priority::High } else { Priority::Low },
        }),
        any::<bool>().prop_map(|accepted| MembershipMessage::NeighborReply { accepted }),
        (peer(), any::<u8>(), peers())
            .prop_map(|(origin, ttl, nodes)| MembershipMessage::Shuffle { origin, ttl, nodes }),
        peers().prop_map(|nodes| MembershipMessage::ShuffleReply { nodes }),
        Just(MembershipMessage::Disconnect),
    ]
}

fn gossip() -> impl Strategy<Value = GossipMessage> {
    let entry = (message_id(), any::<u16>()).prop_map(|(id, hops)| IHaveEntry { id, hops });
    prop_oneof![
        (message_id(), topic(), any::<u16>(), payload()).prop_map(|(id, topic, hops, payload)| {
            GossipMessage::Gossip {
                id,
                topic,
                hops,
                payload,
            }
        }),
        (topic(), prop::collection::vec(entry, 0..=64))
            .prop_map(|(topic, entries)| GossipMessage::IHave { topic, entries }),
        prop::collection::vec(message_id(), 0..=64).prop_map(|ids| GossipMessage::IWant { ids }),
        (
            topic(),
            node_id(),
            prop::collection::vec(any::<u64>(), 0..=MAX_GRAFT_IDS)
        )
            .prop_map(|(topic, origin, seqs)| GossipMessage::Graft {
                topic,
                origin,
                seqs
            }),
        (topic(), prop::option::of(node_id()))
            .prop_map(|(topic, origin)| GossipMessage::Prune { topic, origin }),
    ]
}

fn wire_message() -> impl Strategy<Value = WireMessage> {
    let status = prop::sample::select(ReceiptStatus::ALL.to_vec());
    prop_oneof![
        membership().prop_map(|m| WireMessage::Proto(Message::Membership(m))),
        gossip().prop_map(|m| WireMessage::Proto(Message::Gossip(m))),
        (
            node_id(),
            node_id(),
            any::<u64>(),
            any::<u8>(),
            prop::option::of(any::<u64>()),
            payload()
        )
            .prop_map(|(from, to, id, hops_left, in_reply_to, payload)| {
                WireMessage::Direct(DirectMessage {
                    from,
                    to,
                    id,
                    hops_left,
                    in_reply_to,
                    payload,
                })
            }),
        (node_id(), any::<u64>(), status).prop_map(|(origin, id, status)| {
            WireMessage::Receipt(Receipt { origin, id, status })
        }),
    ]
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        rng_seed: RngSeed::Fixed(0x5eed_2007),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn encode_then_decode_round_trips(message in wire_message()) {
        let bytes = encode(&message).unwrap();
        prop_assert_eq!(decode(Bytes::from(bytes)).unwrap(), message);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode(Bytes::from(data));
    }

    #[test]
    fn arbitrary_bodies_behind_a_valid_header_never_panic(
        kind in prop::sample::select(vec![
            JOIN, FORWARD_JOIN, NEIGHBOR, NEIGHBOR_REPLY, SHUFFLE, SHUFFLE_REPLY, DISCONNECT,
            GOSSIP, IHAVE, IWANT, GRAFT, PRUNE, DIRECT, RECEIPT,
        ]),
        body in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut data = vec![VERSION, kind];
        data.extend(body);
        let _ = decode(Bytes::from(data));
    }

    #[test]
    fn every_truncation_is_a_truncated_error(message in wire_message()) {
        let bytes = Bytes::from(encode(&message).unwrap());
        for cut in 0..bytes.len() {
            let result = decode(bytes.slice(..cut));
            prop_assert!(
                matches!(result, Err(DecodeError::Truncated { .. })),
                "cut at {} of {}: {:?}", cut, bytes.len(), result
            );
        }
    }

    #[test]
    fn trailing_bytes_are_rejected(message in wire_message(), extra in 1usize..8) {
        let mut bytes = encode(&message).unwrap();
        bytes.extend(std::iter::repeat_n(0u8, extra));
        let result = decode(Bytes::from(bytes));
        prop_assert!(
            matches!(result, Err(DecodeError::TrailingBytes { count, .. }) if count == extra),
            "{:?}", result
        );
    }
}

fn id(byte: u8) -> NodeId {
    NodeId::from_bytes([byte; 32])
}

#[test]
fn golden_join_and_prune_encodings_match_the_documentation() {
    let join = WireMessage::Proto(Message::Membership(MembershipMessage::Join {
        addr: "10.0.0.1:4433".parse().unwrap(),
    }));
    assert_eq!(hex::encode(encode(&join).unwrap()), "0101040a0000011151");
    let prune = WireMessage::Proto(Message::Gossip(GossipMessage::Prune {
        topic: Topic::new("t").unwrap(),
        origin: None,
    }));
    assert_eq!(hex::encode(encode(&prune).unwrap()), "0114017400");
    let gossip = WireMessage::Proto(Message::Gossip(GossipMessage::Gossip {
        id: MessageId {
            origin: id(0xaa),
            seq: 7,
        },
        topic: Topic::new("t").unwrap(),
        hops: 1,
        payload: Bytes::from_static(b"hi"),
    }));
    let expected = format!(
        "0110{}{:016x}0174{:04x}{:08x}6869",
        "aa".repeat(32),
        7,
        1,
        2
    );
    assert_eq!(hex::encode(encode(&gossip).unwrap()), expected);
}

#[test]
fn decoded_payload_shares_the_frame_memory() {
    let message = WireMessage::Direct(DirectMessage {
        from: id(1),
        to: id(2),
        id: 9,
        hops_left: 3,
        in_reply_to: Some(4),
        payload: Bytes::from(vec![7u8; 100]),
    });
    let frame = Bytes::from(encode(&message).unwrap());
    let Ok(WireMessage::Direct(direct)) = decode(frame.clone()) else {
        panic!("not a direct message");
    };
    let range = frame.as_ptr_range();
    assert!(range.contains(&direct.payload.as_ptr()));
}

#[test]
fn header_errors_are_typed() {
    assert_eq!(
        decode(Bytes::from_static(&[2, JOIN])),
        Err(DecodeError::UnsupportedVersion { found: 2 })
    );
    assert_eq!(
        decode(Bytes::from_static(&[VERSION, 0x7f])),
        Err(DecodeError::UnknownKind { kind: 0x7f })
    );
    assert!(matches!(
        decode(Bytes::new()),
        Err(DecodeError::Truncated {
            field: "version",
            ..
        })
    ));
}

#[test]
fn huge_lengths_and_counts_fail_before_allocating() {
    let mut gossip = vec![VERSION, GOSSIP];
    gossip.extend([0u8; 40]);
    gossip.extend([1, b't', 0, 1]);
    gossip.extend(u32::MAX.to_be_bytes());
    assert!(matches!(
        decode(Bytes::from(gossip)),
        Err(DecodeError::TooLong { field: "payload", len, .. }) if len == u32::MAX as usize
    ));

    let mut iwant = vec![VERSION, IWANT];
    iwant.extend(u16::MAX.to_be_bytes());
    assert!(matches!(
        decode(Bytes::from(iwant)),
        Err(DecodeError::TooMany {
            count: 65535,
            max: MAX_IWANT_IDS,
            ..
        })
    ));

    // Within the maximum but claiming more entries than the bytes present.
    let mut shuffle_reply = vec![VERSION, SHUFFLE_REPLY];
    shuffle_reply.extend(64u16.to_be_bytes());
    assert!(matches!(
        decode(Bytes::from(shuffle_reply)),
        Err(DecodeError::Truncated { needed, remaining: 0, .. }) if needed == 64 * MIN_PEER_ADDR_LEN
    ));

    let long_topic = [&[VERSION, PRUNE, 200][..], &[b'x'; 200], &[0]].concat();
    assert!(matches!(
        decode(Bytes::from(long_topic)),
        Err(DecodeError::TooLong {
            field: "topic",
            len: 200,
            ..
        })
    ));
}

/// A receipt (origin, id 1) with status 6, which has no meaning.
const RECEIPT_BAD_STATUS: [u8; 43] = {
    let mut bytes = [0u8; 43];
    bytes[0] = VERSION;
    bytes[1] = RECEIPT;
    bytes[41] = 1;
    bytes[42] = 6;
    bytes
};

#[test]
fn invalid_values_are_typed() {
    let cases: [(&[u8], &str); 5] = [
        (&[VERSION, JOIN, 5, 0, 0], "address family"),
        (&[VERSION, NEIGHBOR_REPLY, 2], "accepted"),
        (&[VERSION, PRUNE, 1, b't', 9], "Prune.has_origin"),
        (&RECEIPT_BAD_STATUS, "status"),
        (&[VERSION, NEIGHBOR, 4, 1, 2, 3, 4, 0, 80, 3], "priority"),
    ];
    for (bytes, expected) in cases {
        match decode(Bytes::copy_from_slice(bytes)) {
            Err(DecodeError::InvalidValue { field, .. }) => assert_eq!(field, expected),
            other => panic!("{expected}: {other:?}"),
        }
    }
    for topic in [
        &[VERSION, PRUNE, 0, 0][..],
        &[VERSION, PRUNE, 2, 0xff, 0xfe, 0],
    ] {
        assert!(matches!(
            decode(Bytes::copy_from_slice(topic)),
            Err(DecodeError::InvalidTopic { offset: 2 })
        ));
    }
}

#[test]
fn encoder_refuses_what_the_decoder_would_refuse() {
    let oversized = WireMessage::Direct(DirectMessage {
        from: id(1),
        to: id(2),
        id: 1,
        hops_left: 1,
        in_reply_to: None,
        payload: Bytes::from(vec![0u8; MAX_PAYLOAD_LEN + 1]),
    });
    let mut buf = vec![0xee];
    assert!(matches!(
        encode_into(&oversized, &mut buf),
        Err(EncodeError::TooLong {
            field: "payload",
            ..
        })
    ));
    assert_eq!(buf, vec![0xee], "buffer restored on error");

    let entry = IHaveEntry {
        id: MessageId {
            origin: id(1),
            seq: 1,
        },
        hops: 1,
    };
    let too_many = WireMessage::Proto(Message::Gossip(GossipMessage::IHave {
        topic: Topic::new("t").unwrap(),
        entries: vec![entry; MAX_IHAVE_ENTRIES + 1],
    }));
    assert!(matches!(
        encode(&too_many),
        Err(EncodeError::TooMany { count, .. }) if count == MAX_IHAVE_ENTRIES + 1
    ));
}

#[test]
fn largest_message_fits_the_declared_bound() {
    let largest = WireMessage::Proto(Message::Gossip(GossipMessage::Gossip {
        id: MessageId {
            origin: id(1),
            seq: u64::MAX,
        },
        topic: Topic::new(&"x".repeat(MAX_TOPIC_LEN)).unwrap(),
        hops: u16::MAX,
        payload: Bytes::from(vec![0u8; MAX_PAYLOAD_LEN]),
    }));
    assert!(encode(&largest).unwrap().len() <= MAX_MESSAGE_LEN);
}
