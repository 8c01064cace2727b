use super::*;
use crate::proto::Message;

fn id(n: u8) -> NodeId {
    NodeId::from_bytes([n; 32])
}

fn addr(n: u8) -> PeerAddr {
    PeerAddr::new(id(n), SocketAddr::from(([10, 0, 0, n], 4433)))
}

fn membership(active_capacity: usize) -> Membership {
    let config = MembershipConfig {
        active_capacity,
        ..MembershipConfig::default()
    };
    Membership::new(addr(0), config, 7)
}

fn take(out: &mut Outbox) -> Vec<Command> {
    out.0.drain(..).collect()
}

fn sent(commands: &[Command]) -> Vec<(NodeId, MembershipMessage)> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Send {
                to,
                message: Message::Membership(m),
                ..
            } => Some((*to, m.clone())),
            _ => None,
        })
        .collect()
}

fn neighbor(priority: Priority, n: u8) -> MembershipMessage {
    MembershipMessage::Neighbor {
        addr: addr(n).addr,
        priority,
    }
}

/// Peer `n` connects and asks to be a neighbour with high priority.
fn befriend(m: &mut Membership, n: u8, now: Instant, out: &mut Outbox) {
    m.on_peer_up(id(n), now, out);
    m.on_message(id(n), neighbor(Priority::High, n), now, out);
}

#[test]
fn hyparview_4_1_contact_adds_joiner_and_sends_forward_joins() {
    let (mut m, mut out, now) = (membership(5), Outbox::default(), Instant::now());
    befriend(&mut m, 1, now, &mut out);
    befriend(&mut m, 2, now, &mut out);
    take(&mut out);
    m.on_peer_up(id(9), now, &mut out);
    m.on_message(
        id(9),
        MembershipMessage::Join { addr: addr(9).addr },
        now,
        &mut out,
    );
    let commands = take(&mut out);
    assert!(commands.contains(&Command::NeighborUp(id(9))));
    let sent = sent(&commands);
    assert!(sent.contains(&(id(9), MembershipMessage::NeighborReply { accepted: true })));
    for n in [1, 2] {
        let walk = MembershipMessage::ForwardJoin {
            joiner: addr(9),
            ttl: 6,
        };
        assert!(sent.contains(&(id(n), walk)));
    }
}

#[test]
fn hyparview_4_1_forward_join_adds_to_passive_at_prwl_and_active_at_walk_end() {
    let (mut m, mut out, now) = (membership(5), Outbox::default(), Instant::now());
    befriend(&mut m, 1, now, &mut out);
    befriend(&mut m, 2, now, &mut out);
    take(&mut out);
    let walk = |ttl| MembershipMessage::ForwardJoin {
        joiner: addr(9),
        ttl,
    };
    m.on_message(id(1), walk(3), now, &mut out);
    assert!(m.passive.contains(&addr(9)));
    assert_eq!(sent(&take(&mut out)), vec![(id(2), walk(2))]);

    m.on_message(id(1), walk(0), now, &mut out);
    assert_eq!(take(&mut out), vec![Command::Connect(addr(9))]);
    m.on_peer_up(id(9), now, &mut out);
    assert_eq!(
        sent(&take(&mut out)),
        vec![(id(9), neighbor(Priority::High, 0))]
    );
    m.on_message(
        id(9),
        MembershipMessage::NeighborReply { accepted: true },
        now,
        &mut out,
    );
    assert!(take(&mut out).contains(&Command::NeighborUp(id(9))));
    assert_eq!(m.active().len(), 3);
}

#[test]
fn hyparview_4_3_low_priority_rejected_when_full_high_evicts() {
    let (mut m, mut out, now) = (membership(2), Outbox::default(), Instant::now());
    befriend(&mut m, 1, now, &mut out);
    befriend(&mut m, 2, now, &mut out);
    take(&mut out);
    m.on_peer_up(id(3), now, &mut out);
    m.on_message(id(3), neighbor(Priority::Low, 3), now, &mut out);
    let commands = take(&mut out);
    assert_eq!(
        sent(&commands),
        vec![(id(3), MembershipMessage::NeighborReply { accepted: false })]
    );
    assert!(m.passive.contains(&addr(3)));

    m.on_message(id(3), neighbor(Priority::High, 3), now, &mut out);
    let commands = take(&mut out);
    let evicted = commands
        .iter()
        .find_map(|c| match c {
            Command::NeighborDown(p) => Some(*p),
            _ => None,
        })
        .unwrap();
    assert!(sent(&commands).contains(&(evicted, MembershipMessage::Disconnect)));
    assert!(commands.contains(&Command::Disconnect(evicted)));
    assert!(commands.contains(&Command::NeighborUp(id(3))));
    assert!(m.passive.iter().any(|p| p.id == evicted));
    assert_eq!(m.counters().evictions, 1);
}

#[test]
fn pending_requests_count_against_free_slots() {
    let (mut m, mut out, now) = (membership(2), Outbox::default(), Instant::now());
    befriend(&mut m, 1, now, &mut out);
    m.add_passive(addr(5));
    m.on_tick(now, &mut out);
    assert!(take(&mut out).contains(&Command::Connect(addr(5))));
    // One active plus one request in flight: a low-priority request finds no room.
    m.on_peer_up(id(3), now, &mut out);
    m.on_message(id(3), neighbor(Priority::Low, 3), now, &mut out);
    assert!(
        sent(&take(&mut out))
            .contains(&(id(3), MembershipMessage::NeighborReply { accepted: false }))
    );
}

#[test]
fn walk_ends_cannot_make_a_node_dial_without_bound() {
    let (mut m, mut out, now) = (membership(5), Outbox::default(), Instant::now());
    for n in 20..60 {
        let walk = MembershipMessage::ForwardJoin {
            joiner: addr(n),
            ttl: 0,
        };
        m.on_message(id(1), walk, now, &mut out);
    }
    let dials = take(&mut out)
        .iter()
        .filter(|c| matches!(c, Command::Connect(_)))
        .count();
    assert_eq!(dials, MembershipConfig::default().max_pending);
    assert_eq!(m.counters().dials_skipped, 40 - dials as u64);
}

#[test]
fn hyparview_4_3_failed_neighbor_goes_to_lost_and_is_replaced_from_passive() {
    let (mut m, mut out, now) = (membership(3), Outbox::default(), Instant::now());
    befriend(&mut m, 1, now, &mut out);
    m.add_passive(addr(5));
    take(&mut out);
    m.on_peer_down(id(1), now, &mut out);
    let commands = take(&mut out);
    assert!(commands.contains(&Command::NeighborDown(id(1))));
    assert!(commands.contains(&Command::Connect(addr(5))));
    assert_eq!(m.lost_len(), 1);
    m.on_peer_up(id(5), now, &mut out);
    // The active view is empty, so the replacement request has high priority.
    assert_eq!(
        sent(&take(&mut out)),
        vec![(id(5), neighbor(Priority::High, 0))]
    );
}

#[test]
fn rejected_request_backs_off_exponentially() {
    let (mut m, mut out, t0) = (membership(3), Outbox::default(), Instant::now());
    befriend(&mut m, 1, t0, &mut out);
    m.add_passive(addr(5));
    let reject = MembershipMessage::NeighborReply { accepted: false };
    let mut attempts = Vec::new();
    for second in 0..12u64 {
        let now = t0 + Duration::from_secs(second);
        m.on_tick(now, &mut out);
        if take(&mut out).contains(&Command::Connect(addr(5))) {
            attempts.push(second);
            m.on_peer_up(id(5), now, &mut out);
            m.on_message(id(5), reject.clone(), now, &mut out);
            assert!(take(&mut out).contains(&Command::Disconnect(id(5))));
            m.on_peer_down(id(5), now, &mut out);
            take(&mut out);
        }
    }
    // Backoff 1 s, 2 s, 4 s (each ×[1, 1.5)): gaps grow.
    let gaps: Vec<u64> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() >= 2, "attempts {attempts:?}");
    assert!(gaps.windows(2).all(|g| g[1] > g[0]), "gaps {gaps:?}");
    assert_eq!(m.counters().rejected_by_peers, attempts.len() as u64);
}

#[test]
fn lost_peer_that_answers_gets_one_merge_link_per_cooldown() {
    let (mut m, mut out, t0) = (membership(1), Outbox::default(), Instant::now());
    befriend(&mut m, 1, t0, &mut out);
    for n in [7, 8] {
        m.mark_lost(addr(n), t0);
    }
    take(&mut out);
    let mut merged = Vec::new();
    let mut parked = Vec::new();
    for second in 1..10u64 {
        let now = t0 + Duration::from_secs(second);
        m.on_tick(now, &mut out);
        let dialed: Vec<PeerAddr> = take(&mut out)
            .into_iter()
            .filter_map(|c| match c {
                Command::Connect(a) => Some(a),
                _ => None,
            })
            .collect();
        for target in dialed {
            m.on_peer_up(target.id, now, &mut out);
            let commands = take(&mut out);
            if sent(&commands).contains(&(target.id, neighbor(Priority::High, 0))) {
                merged.push(target.id);
            } else {
                assert!(commands.contains(&Command::Disconnect(target.id)));
                parked.push(target.id);
            }
        }
    }
    assert_eq!(merged.len(), 1, "one merge link within the cooldown");
    assert_eq!(parked.len(), 1);
    assert_eq!(m.lost_len(), 0);
    assert!(m.passive.iter().any(|p| p.id == parked[0]));
    assert_eq!(m.counters().merge_links, 1);
}

#[test]
fn overlay_evidence_revives_a_lost_peer_without_probing() {
    let (mut m, mut out, now) = (membership(3), Outbox::default(), Instant::now());
    m.mark_lost(addr(7), now);
    m.revive(id(7), now);
    assert_eq!(m.lost_len(), 0);
    assert!(m.passive.contains(&addr(7)));
    let shuffle = MembershipMessage::Shuffle {
        origin: addr(8),
        ttl: 0,
        nodes: vec![],
    };
    m.mark_lost(addr(8), now);
    m.on_message(id(9), shuffle, now, &mut out);
    assert_eq!(
        m.lost_len(),
        0,
        "a shuffle from a lost origin proves it is reachable"
    );
}

#[test]
fn hyparview_4_4_shuffle_is_answered_and_integrated() {
    let (mut m, mut out, now) = (membership(3), Outbox::default(), Instant::now());
    m.add_passive(addr(5));
    let shuffle = MembershipMessage::Shuffle {
        origin: addr(9),
        ttl: 1,
        nodes: vec![addr(10), addr(11)],
    };
    m.on_message(id(1), shuffle, now, &mut out);
    assert_eq!(take(&mut out), vec![Command::Connect(addr(9))]);
    m.on_peer_up(id(9), now, &mut out);
    let commands = take(&mut out);
    assert_eq!(
        sent(&commands),
        vec![(
            id(9),
            MembershipMessage::ShuffleReply {
                nodes: vec![addr(5)]
            }
        )]
    );
    assert!(commands.contains(&Command::Disconnect(id(9))));
    for n in [9, 10, 11] {
        assert!(m.passive.contains(&addr(n)));
    }
}

#[test]
fn closing_peer_is_not_accepted_until_its_connection_is_down() {
    let (mut m, mut out, now) = (membership(1), Outbox::default(), Instant::now());
    befriend(&mut m, 1, now, &mut out);
    befriend(&mut m, 2, now, &mut out);
    take(&mut out);
    // Peer 1 was evicted and its connection is closing.
    m.on_message(id(1), neighbor(Priority::High, 1), now, &mut out);
    assert_eq!(
        sent(&take(&mut out)),
        vec![(id(1), MembershipMessage::NeighborReply { accepted: false })]
    );
    m.on_peer_down(id(1), now, &mut out);
    take(&mut out);
    m.on_peer_up(id(1), now, &mut out);
    m.on_message(id(1), neighbor(Priority::High, 1), now, &mut out);
    assert!(take(&mut out).contains(&Command::NeighborUp(id(1))));
}

#[test]
fn isolated_node_rejoins_through_bootstrap_and_shuffles_once_connected() {
    let (mut m, mut out, t0) = (membership(3), Outbox::default(), Instant::now());
    m.join(vec![addr(1), addr(0)], t0, &mut out);
    assert_eq!(take(&mut out), vec![Command::Connect(addr(1))]);
    m.on_peer_down(id(1), t0, &mut out);
    assert!(
        take(&mut out).is_empty(),
        "the only bootstrap is backing off"
    );
    let later = t0 + Duration::from_secs(2);
    m.on_tick(later, &mut out);
    assert!(take(&mut out).contains(&Command::Connect(addr(1))));
    m.on_peer_up(id(1), later, &mut out);
    let join = MembershipMessage::Join { addr: addr(0).addr };
    assert_eq!(sent(&take(&mut out)), vec![(id(1), join)]);
    let accepted = MembershipMessage::NeighborReply { accepted: true };
    m.on_message(id(1), accepted, later, &mut out);
    assert_eq!(take(&mut out), vec![Command::NeighborUp(id(1))]);
    let shuffled = (0..120).any(|s| {
        m.on_tick(later + Duration::from_secs(s), &mut out);
        sent(&take(&mut out))
            .iter()
            .any(|(to, msg)| *to == id(1) && msg.kind() == MessageKind::Shuffle)
    });
    assert!(shuffled);
    assert_eq!(m.counters().joins, 2);
}
