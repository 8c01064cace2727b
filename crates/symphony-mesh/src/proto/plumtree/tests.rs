use super::*;
use crate::proto::Message;
use std::time::Duration;

fn id(n: u8) -> NodeId {
    NodeId::from_bytes([n; 32])
}

fn topic() -> Topic {
    Topic::new("t").unwrap()
}

fn msg(origin: u8, seq: u64) -> MessageId {
    MessageId {
        origin: id(origin),
        seq,
    }
}

fn gossip(origin: u8, seq: u64, hops: u16) -> GossipMessage {
    GossipMessage::Gossip {
        id: msg(origin, seq),
        topic: topic(),
        hops,
        payload: Bytes::from_static(b"payload"),
    }
}

/// Node 0 with neighbours `peers`, subscribed to [`topic`].
fn plumtree(config: &Config, peers: &[u8]) -> (PlumTree, Outbox) {
    let mut p = PlumTree::new(id(0), config, 0);
    let mut out = Outbox::default();
    for peer in peers {
        p.neighbor_up(id(*peer), &mut out);
    }
    p.subscribe(&topic(), Instant::now());
    (p, out)
}

fn take(out: &mut Outbox) -> Vec<Command> {
    out.0.drain(..).collect()
}

fn sent(commands: &[Command]) -> Vec<(NodeId, GossipMessage)> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Send {
                to,
                message: Message::Gossip(m),
                ..
            } => Some((*to, m.clone())),
            _ => None,
        })
        .collect()
}

fn pushed_to(commands: &[Command]) -> Vec<NodeId> {
    sent(commands)
        .into_iter()
        .filter(|(_, m)| m.kind() == MessageKind::Gossip)
        .map(|(to, _)| to)
        .collect()
}

fn eager(p: &PlumTree, origin: u8) -> Vec<NodeId> {
    let tree = p.trees.tree(&topic(), &id(origin)).unwrap();
    tree.eager.iter().copied().collect()
}

#[test]
fn plumtree_3_1_new_origin_floods_then_duplicates_prune_both_ends() {
    let (mut p, mut out) = plumtree(&Config::default(), &[1, 2, 3]);
    let now = Instant::now();
    assert_eq!(
        p.on_message(id(1), gossip(9, 1, 1), now, &mut out),
        Received::New(id(9))
    );
    let commands = take(&mut out);
    assert!(matches!(commands[0], Command::Deliver { hops: 1, .. }));
    assert_eq!(pushed_to(&commands), vec![id(2), id(3)]);
    assert!(
        sent(&commands)
            .iter()
            .all(|(_, m)| matches!(m, GossipMessage::Gossip { hops: 2, .. }))
    );

    assert_eq!(
        p.on_message(id(2), gossip(9, 1, 3), now, &mut out),
        Received::Duplicate
    );
    let prune = GossipMessage::Prune {
        topic: topic(),
        origin: Some(id(9)),
    };
    assert_eq!(sent(&take(&mut out)), vec![(id(2), prune)]);
    assert_eq!(eager(&p, 9), vec![id(1), id(3)]);

    // The next message of that origin goes lazily to node 2, in a batched IHAVE.
    p.on_message(id(1), gossip(9, 2, 1), now, &mut out);
    let commands = take(&mut out);
    assert_eq!(pushed_to(&commands), vec![id(3)]);
    assert!(commands.contains(&Command::SetTimer {
        after: Config::default().pubsub.ihave_interval,
        timer: Timer::IHaveFlush
    }));
    p.flush_ihave(&mut out);
    let ihave = GossipMessage::IHave {
        topic: topic(),
        entries: vec![IHaveEntry {
            id: msg(9, 2),
            hops: 2,
        }],
    };
    assert_eq!(sent(&take(&mut out)), vec![(id(2), ihave)]);
    // Other origins' trees are untouched.
    p.on_message(id(1), gossip(8, 1, 1), now, &mut out);
    assert_eq!(pushed_to(&take(&mut out)), vec![id(2), id(3)]);
}

#[test]
fn graft_and_prune_from_a_neighbour_move_this_end_too() {
    let (mut p, mut out) = plumtree(&Config::default(), &[1, 2]);
    let now = Instant::now();
    p.publish(topic(), Bytes::from_static(b"x"), now, &mut out);
    take(&mut out);
    let prune = GossipMessage::Prune {
        topic: topic(),
        origin: Some(id(0)),
    };
    p.on_message(id(2), prune, now, &mut out);
    assert_eq!(eager(&p, 0), vec![id(1)]);
    let graft = GossipMessage::Graft {
        topic: topic(),
        origin: id(0),
        seqs: vec![0],
    };
    p.on_message(id(2), graft, now, &mut out);
    assert_eq!(eager(&p, 0), vec![id(1), id(2)]);
    assert_eq!(pushed_to(&take(&mut out)), vec![id(2)], "grafted id served");

    let prune_all = GossipMessage::Prune {
        topic: topic(),
        origin: None,
    };
    p.on_message(id(1), prune_all, now, &mut out);
    assert_eq!(eager(&p, 0), vec![id(2)]);
}

#[test]
fn plumtree_3_2_missing_message_grafts_best_announcer_then_the_next() {
    let (mut p, mut out) = plumtree(&Config::default(), &[1, 2, 3]);
    let now = Instant::now();
    let ihave = |hops| GossipMessage::IHave {
        topic: topic(),
        entries: vec![IHaveEntry {
            id: msg(9, 5),
            hops,
        }],
    };
    p.on_message(id(1), ihave(4), now, &mut out);
    p.on_message(id(2), ihave(2), now, &mut out);
    let timer = Timer::Graft(msg(9, 5));
    let graft_timeout = Config::default().pubsub.graft_timeout;
    assert_eq!(
        take(&mut out),
        vec![Command::SetTimer {
            after: graft_timeout,
            timer: timer.clone()
        }]
    );

    let graft = GossipMessage::Graft {
        topic: topic(),
        origin: id(9),
        seqs: vec![5],
    };
    p.on_graft_timer(msg(9, 5), now, &mut out);
    let commands = take(&mut out);
    assert_eq!(
        sent(&commands),
        vec![(id(2), graft.clone())],
        "fewest hops first"
    );
    assert!(eager(&p, 9).contains(&id(2)));

    p.on_graft_timer(msg(9, 5), now, &mut out);
    assert_eq!(sent(&take(&mut out)), vec![(id(1), graft)]);
    assert!(p.score(&id(2)) < 0.0, "the silent announcer is penalised");

    p.on_graft_timer(msg(9, 5), now, &mut out);
    assert!(take(&mut out).is_empty());
    assert_eq!(p.counters().graft_exhausted, 1);

    // A message that arrives before its timer cancels the graft.
    p.on_message(id(3), ihave(1), now, &mut out);
    p.on_message(id(3), gossip(9, 5, 1), now, &mut out);
    take(&mut out);
    p.on_graft_timer(msg(9, 5), now, &mut out);
    assert!(sent(&take(&mut out)).is_empty());
}

#[test]
fn slow_peer_is_cooled_gets_ihave_and_exactly_one_probe() {
    let config = Config::default();
    let (mut p, mut out) = plumtree(&config, &[1, 2]);
    let t0 = Instant::now();
    p.on_send_timeout(id(2), t0);
    assert_eq!(p.counters().coolings, 1);
    p.on_message(id(1), gossip(9, 1, 1), t0, &mut out);
    assert_eq!(pushed_to(&take(&mut out)), Vec::<NodeId>::new());
    assert_eq!(p.counters().pushes_withheld, 1);
    p.flush_ihave(&mut out);
    assert!(matches!(
        sent(&take(&mut out))[..],
        [(to, GossipMessage::IHave { .. })] if to == id(2)
    ));

    let after = t0 + config.cooling.base;
    p.on_message(id(1), gossip(9, 2, 1), after, &mut out);
    assert_eq!(
        pushed_to(&take(&mut out)),
        vec![id(2)],
        "the recovery probe"
    );
    p.on_message(id(1), gossip(9, 3, 1), after, &mut out);
    assert_eq!(pushed_to(&take(&mut out)), Vec::<NodeId>::new());
    p.on_send_success(id(2));
    assert_eq!(p.counters().recoveries, 1);
    p.on_message(id(1), gossip(9, 4, 1), after, &mut out);
    assert_eq!(pushed_to(&take(&mut out)), vec![id(2)]);
}

#[test]
fn graft_from_a_cooled_peer_is_refused_with_prune_but_served() {
    let (mut p, mut out) = plumtree(&Config::default(), &[1, 2]);
    let now = Instant::now();
    p.on_message(id(1), gossip(9, 1, 1), now, &mut out);
    p.on_message(id(2), gossip(9, 1, 1), now, &mut out);
    take(&mut out);
    p.on_send_timeout(id(2), now);
    let graft = GossipMessage::Graft {
        topic: topic(),
        origin: id(9),
        seqs: vec![1],
    };
    p.on_message(id(2), graft, now, &mut out);
    let sent = sent(&take(&mut out));
    assert!(matches!(sent[0], (to, GossipMessage::Prune { .. }) if to == id(2)));
    assert!(matches!(sent[1], (to, GossipMessage::Gossip { .. }) if to == id(2)));
    assert!(!eager(&p, 9).contains(&id(2)));
}

#[test]
fn low_scoring_peer_is_pruned_from_every_tree() {
    let (mut p, mut out) = plumtree(&Config::default(), &[1, 2]);
    let now = Instant::now();
    for origin in [8, 9] {
        p.on_message(id(1), gossip(origin, 1, 1), now, &mut out);
    }
    for _ in 0..3 {
        p.on_send_timeout(id(2), now);
    }
    take(&mut out);
    p.on_tick(now, &mut out);
    let prune = GossipMessage::Prune {
        topic: topic(),
        origin: None,
    };
    assert_eq!(sent(&take(&mut out)), vec![(id(2), prune)]);
    assert_eq!(eager(&p, 8), vec![id(1)]);
    assert_eq!(eager(&p, 9), vec![id(1)]);
    assert_eq!(p.counters().demotions, 1);
}

#[test]
fn opportunistic_graft_repairs_a_tree_without_eager_peers() {
    let mut config = Config::default();
    config.pubsub.opportunistic_graft_ticks = 2;
    let (mut p, mut out) = plumtree(&config, &[1, 2]);
    let now = Instant::now();
    p.on_message(id(1), gossip(9, 1, 1), now, &mut out);
    for peer in [1, 2] {
        let prune = GossipMessage::Prune {
            topic: topic(),
            origin: Some(id(9)),
        };
        p.on_message(id(peer), prune, now, &mut out);
    }
    p.on_message(id(2), gossip(9, 2, 1), now, &mut out);
    take(&mut out);
    p.on_tick(now, &mut out);
    assert!(sent(&take(&mut out)).is_empty());
    p.on_tick(now, &mut out);
    let graft = GossipMessage::Graft {
        topic: topic(),
        origin: id(9),
        seqs: vec![],
    };
    // Node 2 brought the last first delivery, so it scores higher.
    assert_eq!(sent(&take(&mut out)), vec![(id(2), graft)]);
    assert_eq!(p.counters().opportunistic_grafts, 1);
}

#[test]
fn relays_unsubscribed_topics_without_delivering() {
    let (mut p, mut out) = plumtree(&Config::default(), &[1, 2]);
    p.unsubscribe(&topic());
    p.on_message(id(1), gossip(9, 1, 1), Instant::now(), &mut out);
    let commands = take(&mut out);
    assert!(
        !commands
            .iter()
            .any(|c| matches!(c, Command::Deliver { .. }))
    );
    assert_eq!(pushed_to(&commands), vec![id(2)]);
}

#[test]
fn oversized_publish_is_refused() {
    let (mut p, mut out) = plumtree(&Config::default(), &[1]);
    let payload = Bytes::from(vec![0; wire::MAX_PAYLOAD_LEN + 1]);
    p.publish(topic(), payload, Instant::now(), &mut out);
    assert!(take(&mut out).is_empty());
    assert_eq!(p.counters().oversized_publishes, 1);
    assert_eq!(p.counters().published, 0);
}

#[test]
fn caches_respect_byte_caps_and_ttl() {
    let mut config = Config::default();
    config.pubsub.seen_max_bytes = 3 * SEEN_ENTRY_BYTES;
    config.pubsub.payload_max_bytes = 2 * (7 + 1 + PAYLOAD_ENTRY_OVERHEAD);
    let (mut p, mut out) = plumtree(&config, &[1, 2]);
    let t0 = Instant::now();
    for seq in 0..5 {
        p.on_message(id(1), gossip(9, seq, 1), t0, &mut out);
    }
    let stats = p.cache_stats();
    assert_eq!((stats.seen_entries, stats.payload_entries), (3, 2));
    assert_eq!(stats.seen_evictions.over_bytes, 2);
    assert_eq!(stats.payload_evictions.over_bytes, 3);
    take(&mut out);
    p.on_message(
        id(2),
        GossipMessage::IWant {
            ids: vec![msg(9, 0), msg(9, 4)],
        },
        t0,
        &mut out,
    );
    assert_eq!(pushed_to(&take(&mut out)), vec![id(2)]);
    assert_eq!((p.counters().served, p.counters().unserved), (1, 1));

    p.on_tick(t0 + config.pubsub.seen_ttl, &mut out);
    let stats = p.cache_stats();
    assert_eq!((stats.seen_entries, stats.payload_entries), (0, 0));
    assert_eq!(stats.seen_evictions.expired, 3);
}

#[test]
fn a_new_neighbour_is_told_of_every_cached_message() {
    let (mut p, mut out) = plumtree(&Config::default(), &[1]);
    let now = Instant::now();
    p.on_message(id(1), gossip(9, 1, 1), now, &mut out);
    p.publish(topic(), Bytes::from_static(b"own"), now, &mut out);
    take(&mut out);
    p.neighbor_up(id(2), &mut out);
    p.flush_ihave(&mut out);
    let announced: Vec<(NodeId, Vec<MessageId>)> = sent(&take(&mut out))
        .into_iter()
        .filter_map(|(to, m)| match m {
            GossipMessage::IHave { entries, .. } => {
                Some((to, entries.iter().map(|e| e.id).collect()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(announced.len(), 1);
    assert_eq!(announced[0].0, id(2));
    assert_eq!(announced[0].1.len(), 2);
    assert!(announced[0].1.contains(&msg(9, 1)));
    assert_eq!(p.counters().catch_up_announcements, 2);
}

fn prunes(commands: &[Command]) -> Vec<NodeId> {
    sent(commands)
        .into_iter()
        .filter(|(_, m)| m.kind() == MessageKind::Prune)
        .map(|(to, _)| to)
        .collect()
}

#[test]
fn a_push_crossing_a_prune_does_not_cut_the_node_off_its_parent() {
    let (mut p, mut out) = plumtree(&Config::default(), &[1, 2, 3]);
    let now = Instant::now();
    // Origin 9's first message: 1 is first, 2 is a duplicate and is pruned.
    p.on_message(id(1), gossip(9, 1, 1), now, &mut out);
    p.on_message(id(2), gossip(9, 1, 1), now, &mut out);
    assert_eq!(prunes(&take(&mut out)), vec![id(2)]);
    assert_eq!(eager(&p, 9), vec![id(1), id(3)]);
    // 2 pushed message 2 before it got the PRUNE, and that copy wins the race.
    p.on_message(id(2), gossip(9, 2, 1), now, &mut out);
    assert_eq!(
        pushed_to(&take(&mut out)),
        vec![id(3)],
        "not pushed to the parent, which has it"
    );
    // The parent's copy is a duplicate, but the parent stays.
    p.on_message(id(1), gossip(9, 2, 1), now, &mut out);
    assert!(prunes(&take(&mut out)).is_empty());
    assert_eq!(eager(&p, 9), vec![id(1), id(3)]);
    assert_eq!(p.counters().parents_kept, 1);
}

#[test]
fn a_repaired_message_is_not_pushed_to_the_peers_that_announced_it() {
    let (mut p, mut out) = plumtree(&Config::default(), &[1, 2, 3]);
    let now = Instant::now();
    let ihave = GossipMessage::IHave {
        topic: topic(),
        entries: vec![IHaveEntry {
            id: msg(9, 5),
            hops: 2,
        }],
    };
    p.on_message(id(1), ihave.clone(), now, &mut out);
    p.on_message(id(2), ihave, now, &mut out);
    p.on_graft_timer(msg(9, 5), now, &mut out);
    take(&mut out);
    p.on_message(id(1), gossip(9, 5, 2), now, &mut out);
    assert_eq!(pushed_to(&take(&mut out)), vec![id(3)]);
}

#[test]
fn graft_timers_follow_the_measured_path_rtt_within_floor_and_ceiling() {
    let config = Config::default();
    let c = &config.pubsub;
    let (mut p, mut out) = plumtree(&config, &[1, 2, 3, 4]);
    let now = Instant::now();
    let ms = Duration::from_millis;
    // 1: loopback (below the floor), 2: a WAN link, 3: beyond the ceilings, 4: unmeasured.
    p.set_path(id(1), Duration::from_micros(300), 0.0);
    p.set_path(id(2), ms(120), 0.0);
    p.set_path(id(3), ms(5000), 0.0);
    p.set_path(id(7), ms(50), 0.0);
    assert_eq!(p.rtt(&id(7)), None, "not a neighbour");
    let timer_after = |p: &mut PlumTree, out: &mut Outbox, from: u8, seq: u64| {
        let ihave = GossipMessage::IHave {
            topic: topic(),
            entries: vec![IHaveEntry {
                id: msg(9, seq),
                hops: 1,
            }],
        };
        p.on_message(id(from), ihave, now, out);
        match take(out).as_slice() {
            [Command::SetTimer { after, .. }] => *after,
            other => panic!("expected one timer, got {other:?}"),
        }
    };
    assert_eq!(timer_after(&mut p, &mut out, 1, 1), c.graft_timeout_min);
    assert_eq!(timer_after(&mut p, &mut out, 2, 2), ms(120));
    assert_eq!(timer_after(&mut p, &mut out, 3, 3), c.graft_timeout);
    assert_eq!(timer_after(&mut p, &mut out, 4, 4), c.graft_timeout);
    let retry_after = |p: &mut PlumTree, out: &mut Outbox, seq: u64| {
        p.on_graft_timer(msg(9, seq), now, out);
        take(out)
            .into_iter()
            .find_map(|c| match c {
                Command::SetTimer { after, .. } => Some(after),
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(retry_after(&mut p, &mut out, 1), c.graft_timeout_min);
    assert_eq!(
        retry_after(&mut p, &mut out, 2),
        ms(155),
        "1.25 × 120 ms + 5 ms"
    );
    assert_eq!(retry_after(&mut p, &mut out, 3), c.graft_retry_max);
    assert_eq!(retry_after(&mut p, &mut out, 4), c.graft_retry);
    p.neighbor_down(id(2));
    assert_eq!(p.rtt(&id(2)), None, "forgotten with the link");
}

#[test]
fn lossy_lazy_links_get_payloads_besides_ihave_and_their_duplicates_are_not_penalised() {
    let (mut p, mut out) = plumtree(&Config::default(), &[1, 2, 3, 4, 5, 6]);
    let now = Instant::now();
    let ms = Duration::from_millis;
    p.on_message(id(1), gossip(9, 1, 1), now, &mut out);
    for peer in 2..=6 {
        let prune = GossipMessage::Prune {
            topic: topic(),
            origin: Some(id(9)),
        };
        p.on_message(id(peer), prune, now, &mut out);
    }
    assert_eq!(eager(&p, 9), vec![id(1)]);
    // 2–5 lose 5% of their packets, 6 is clean; at most 3 lossy pushes per message.
    for peer in 2..=6 {
        p.set_path(id(peer), ms(50), if peer == 6 { 0.0 } else { 0.05 });
    }
    take(&mut out);
    p.on_message(id(1), gossip(9, 2, 1), now, &mut out);
    let commands = take(&mut out);
    assert_eq!(pushed_to(&commands), vec![id(2), id(3), id(4)]);
    assert_eq!(p.counters().lossy_pushes, 3);
    assert_eq!(eager(&p, 9), vec![id(1)], "the tree is unchanged");
    p.flush_ihave(&mut out);
    let announced: Vec<NodeId> = sent(&take(&mut out))
        .into_iter()
        .filter(|(_, m)| m.kind() == MessageKind::IHave)
        .map(|(to, _)| to)
        .collect();
    assert_eq!(
        announced,
        vec![id(2), id(3), id(4), id(5), id(6)],
        "repair path kept"
    );

    let score = p.score(&id(2));
    p.on_message(id(2), gossip(9, 2, 2), now, &mut out);
    assert!(
        sent(&take(&mut out)).is_empty(),
        "no PRUNE for a lazy link's copy"
    );
    assert_eq!(p.score(&id(2)), score, "and no penalty");
    assert_eq!(p.counters().duplicates, 1);

    let config = Config {
        pubsub: PubsubConfig {
            lossy_push_peers: 0,
            ..PubsubConfig::default()
        },
        ..Config::default()
    };
    let (mut q, mut out) = plumtree(&config, &[1, 2]);
    q.on_message(id(1), gossip(9, 1, 1), now, &mut out);
    let prune = GossipMessage::Prune {
        topic: topic(),
        origin: Some(id(9)),
    };
    q.on_message(id(2), prune, now, &mut out);
    q.set_path(id(2), ms(50), 0.5);
    take(&mut out);
    q.on_message(id(1), gossip(9, 2, 1), now, &mut out);
    assert!(pushed_to(&take(&mut out)).is_empty(), "disabled");
}

#[test]
fn a_copy_from_a_lazy_link_is_announced_to_the_parent_not_pushed() {
    let (mut p, mut out) = plumtree(&Config::default(), &[1, 2, 3]);
    let now = Instant::now();
    p.on_message(id(1), gossip(9, 1, 1), now, &mut out);
    let prune = GossipMessage::Prune {
        topic: topic(),
        origin: Some(id(9)),
    };
    p.on_message(id(2), prune, now, &mut out);
    take(&mut out);
    // Seq 2 comes over the lazy link first: the parent (1) may have been cut off.
    p.on_message(id(2), gossip(9, 2, 2), now, &mut out);
    let commands = take(&mut out);
    assert_eq!(pushed_to(&commands), vec![id(3)], "the eager child only");
    p.flush_ihave(&mut out);
    let announced: Vec<NodeId> = sent(&take(&mut out))
        .into_iter()
        .filter(|(_, m)| m.kind() == MessageKind::IHave)
        .map(|(to, _)| to)
        .collect();
    assert_eq!(announced, vec![id(1)], "the parent hears of it");
}
