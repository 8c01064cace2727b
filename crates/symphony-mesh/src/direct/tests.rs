//! The router on a small in-memory network: routers exchange actions in FIFO order, links and
//! neighbours are fixed per test.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::*;

fn id(n: u8) -> NodeId {
    NodeId::from_bytes([n; 32])
}

struct Node {
    router: Router,
    connected: BTreeSet<NodeId>,
    neighbours: Vec<NodeId>,
    inbox: Vec<Arrival>,
    inbox_room: usize,
    completed: Vec<(u64, Result<Receipt, DirectError>)>,
}

impl Links for Node {
    fn is_connected(&self, peer: &NodeId) -> bool {
        self.connected.contains(peer)
    }
    fn neighbours(&self) -> Vec<NodeId> {
        self.neighbours.clone()
    }
}

/// Routers 1..=n; `edges` are connections, all of them in the active views.
struct Net {
    nodes: BTreeMap<NodeId, Node>,
    wire: VecDeque<(NodeId, NodeId, WireMessage)>,
    now: Instant,
}

impl Net {
    fn new(n: u8, edges: &[(u8, u8)], config: DirectConfig) -> Self {
        let mut nodes = BTreeMap::new();
        for i in 1..=n {
            nodes.insert(
                id(i),
                Node {
                    router: Router::new(id(i), config.clone(), u64::from(i) * 1000),
                    connected: BTreeSet::new(),
                    neighbours: Vec::new(),
                    inbox: Vec::new(),
                    inbox_room: usize::MAX,
                    completed: Vec::new(),
                },
            );
        }
        let mut net = Self {
            nodes,
            wire: VecDeque::new(),
            now: Instant::now(),
        };
        for (a, b) in edges {
            net.link(id(*a), id(*b), true);
        }
        net
    }

    fn link(&mut self, a: NodeId, b: NodeId, neighbours: bool) {
        for (x, y) in [(a, b), (b, a)] {
            let node = self.nodes.get_mut(&x).unwrap();
            node.connected.insert(y);
            if neighbours {
                node.neighbours.push(y);
            }
        }
    }

    fn node(&mut self, n: u8) -> &mut Node {
        self.nodes.get_mut(&id(n)).unwrap()
    }

    fn apply(&mut self, at: NodeId, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send { to, message } => {
                    assert!(
                        self.nodes[&at].connected.contains(&to),
                        "send without a link"
                    );
                    self.wire.push_back((at, to, message));
                }
                Action::Complete { id, result } => {
                    self.nodes
                        .get_mut(&at)
                        .unwrap()
                        .completed
                        .push((id, result));
                }
            }
        }
    }

    fn send(&mut self, from: u8, to: u8, payload: &'static [u8]) -> u64 {
        let now = self.now;
        let node = self.nodes.get_mut(&id(from)).unwrap();
        let links = Snapshot::of(node);
        let (msg_id, actions) = {
            let mut inbox = inbox_of(&mut node.inbox, node.inbox_room);
            node.router.send(
                id(to),
                Bytes::from_static(payload),
                None,
                now,
                &links,
                &mut inbox,
            )
        };
        self.apply(id(from), actions);
        msg_id
    }

    /// Delivers frames until the wire is empty; returns how many were delivered.
    fn run(&mut self) -> usize {
        let mut delivered = 0;
        while let Some((from, to, message)) = self.wire.pop_front() {
            delivered += 1;
            let now = self.now;
            let node = self.nodes.get_mut(&to).unwrap();
            let links = Snapshot::of(node);
            let actions = match message {
                WireMessage::Direct(d) => {
                    let mut inbox = inbox_of(&mut node.inbox, node.inbox_room);
                    let actions = node.router.on_direct(from, d, now, &links, &mut inbox);
                    drop(inbox);
                    actions
                }
                WireMessage::Receipt(r) => node.router.on_receipt(from, r),
                WireMessage::Proto(_) => unreachable!(),
            };
            self.apply(to, actions);
        }
        delivered
    }

    fn completed(&mut self, n: u8) -> Vec<Result<Receipt, DirectError>> {
        self.node(n)
            .completed
            .iter()
            .map(|(_, r)| r.clone())
            .collect()
    }
}

struct Snapshot {
    connected: BTreeSet<NodeId>,
    neighbours: Vec<NodeId>,
}

impl Snapshot {
    fn of(node: &Node) -> Self {
        Self {
            connected: node.connected.clone(),
            neighbours: node.neighbours.clone(),
        }
    }
}

impl Links for Snapshot {
    fn is_connected(&self, peer: &NodeId) -> bool {
        self.connected.contains(peer)
    }
    fn neighbours(&self) -> Vec<NodeId> {
        self.neighbours.clone()
    }
}

fn inbox_of(inbox: &mut Vec<Arrival>, room: usize) -> impl FnMut(Arrival) -> bool + '_ {
    move |arrival| {
        if inbox.len() >= room {
            return false;
        }
        inbox.push(arrival);
        true
    }
}

#[test]
fn loopback_short_circuits_and_a_full_inbox_is_overloaded() {
    let mut net = Net::new(1, &[], DirectConfig::default());
    net.send(1, 1, b"self");
    assert_eq!(net.completed(1), vec![Ok(Receipt::Loopback)]);
    assert_eq!(net.node(1).inbox[0].receipt, Receipt::Loopback);
    assert_eq!(net.node(1).inbox[0].payload, Bytes::from_static(b"self"));
    net.node(1).inbox_room = 1;
    net.send(1, 1, b"again");
    assert_eq!(
        net.completed(1)[1],
        Err(DirectError::Overloaded { node: id(1) })
    );
    assert!(net.wire.is_empty());
}

#[test]
fn a_connected_addressee_answers_a_direct_receipt() {
    let mut net = Net::new(2, &[(1, 2)], DirectConfig::default());
    net.send(1, 2, b"hi");
    assert_eq!(net.run(), 2, "one message, one receipt");
    assert_eq!(net.completed(1), vec![Ok(Receipt::Direct)]);
    let arrival = &net.node(2).inbox[0];
    assert_eq!((arrival.from, arrival.receipt), (id(1), Receipt::Direct));
    assert_eq!(net.node(1).router.counters().receipts_direct, 1);
    assert_eq!(net.node(2).router.counters().received, 1);
}

#[test]
fn a_message_is_relayed_through_a_neighbour_connected_to_the_addressee() {
    let mut net = Net::new(3, &[(1, 2), (2, 3)], DirectConfig::default());
    net.send(1, 3, b"via 2");
    net.run();
    assert_eq!(net.completed(1), vec![Ok(Receipt::Relayed { via: id(2) })]);
    assert_eq!(
        net.node(3).inbox[0].receipt,
        Receipt::Relayed { via: id(2) }
    );
    assert_eq!(net.node(2).router.counters().forwarded, 1);
    assert_eq!(net.node(2).router.depths().1, 0, "relay entry closed");
}

#[test]
fn two_branches_deliver_once_and_the_duplicate_branch_closes() {
    let mut net = Net::new(
        4,
        &[(1, 2), (1, 3), (2, 4), (3, 4)],
        DirectConfig::default(),
    );
    net.send(1, 4, b"two ways");
    net.run();
    assert_eq!(net.node(4).inbox.len(), 1);
    assert_eq!(net.node(4).router.counters().duplicates, 1);
    let completed = net.completed(1);
    assert_eq!(completed.len(), 1);
    assert!(matches!(completed[0], Ok(Receipt::Relayed { .. })));
    assert_eq!(net.node(1).router.depths().0, 0);
}

#[test]
fn a_relay_cycle_never_loops_and_every_branch_closes() {
    // 1-2-3 form a triangle; 5 is connected to nobody.
    let mut net = Net::new(5, &[(1, 2), (2, 3), (3, 1)], DirectConfig::default());
    net.send(1, 5, b"nowhere");
    let frames = net.run();
    assert!(frames < 12, "bounded flood, got {frames} frames");
    assert_eq!(
        net.completed(1),
        vec![Err(DirectError::Unreachable {
            node: id(5),
            reason: UnreachableReason::NoRoute
        })]
    );
    for n in 1..=3 {
        assert_eq!(net.node(n).router.depths().1, 0, "relay entries of {n}");
    }
}

#[test]
fn the_hop_limit_is_reported_when_the_path_is_too_long() {
    let config = DirectConfig {
        max_hops: 2,
        ..DirectConfig::default()
    };
    // 1-2-3-4: reaching 4 needs three links.
    let mut net = Net::new(4, &[(1, 2), (2, 3), (3, 4)], config);
    net.send(1, 4, b"far");
    net.run();
    assert_eq!(
        net.completed(1),
        vec![Err(DirectError::Unreachable {
            node: id(4),
            reason: UnreachableReason::HopLimit
        })]
    );
    assert_eq!(net.node(2).router.counters().hop_limit, 1);
    let mut net = Net::new(4, &[(1, 2), (2, 3), (3, 4)], DirectConfig::default());
    net.send(1, 4, b"far");
    net.run();
    assert_eq!(net.completed(1), vec![Ok(Receipt::Relayed { via: id(2) })]);
}

#[test]
fn without_neighbours_the_failure_is_immediate() {
    let mut net = Net::new(2, &[], DirectConfig::default());
    net.send(1, 2, b"alone");
    assert_eq!(
        net.completed(1),
        vec![Err(DirectError::Unreachable {
            node: id(2),
            reason: UnreachableReason::NoNeighbours
        })]
    );
}

#[test]
fn silence_times_out_and_relay_state_expires() {
    let config = DirectConfig::default();
    let timeout = config.timeout;
    let mut net = Net::new(3, &[(1, 2), (2, 3)], config);
    net.send(1, 3, b"lost");
    // Deliver 1 -> 2 only; 2's forward to 3 is lost.
    let (from, to, message) = net.wire.pop_front().unwrap();
    let now = net.now;
    let node = net.nodes.get_mut(&to).unwrap();
    let links = Snapshot::of(node);
    let WireMessage::Direct(d) = message else {
        panic!()
    };
    let _ = node.router.on_direct(from, d, now, &links, &mut |_| true);
    net.wire.clear();
    assert_eq!(net.node(2).router.depths().1, 1);
    let later = now + timeout;
    assert_eq!(net.node(1).router.next_deadline(), Some(later));
    let actions = net.node(1).router.on_tick(later);
    net.apply(id(1), actions);
    assert_eq!(
        net.completed(1),
        vec![Err(DirectError::Timeout {
            node: id(3),
            after_ms: 5000
        })]
    );
    assert!(net.node(2).router.on_tick(later).is_empty());
    assert_eq!(net.node(2).router.depths().1, 0);
}

#[test]
fn a_branch_peer_going_down_fails_the_branch() {
    let mut net = Net::new(3, &[(1, 2), (2, 3)], DirectConfig::default());
    net.send(1, 3, b"x");
    net.wire.clear();
    let actions = net.node(1).router.on_peer_down(id(2));
    net.apply(id(1), actions);
    assert_eq!(
        net.completed(1),
        vec![Err(DirectError::Unreachable {
            node: id(3),
            reason: UnreachableReason::NoRoute
        })]
    );
}

#[test]
fn oversized_payloads_and_too_many_pending_are_refused() {
    let config = DirectConfig {
        max_pending: 1,
        ..DirectConfig::default()
    };
    let mut net = Net::new(2, &[(1, 2)], config);
    let links = Snapshot::of(&net.nodes[&id(1)]);
    let now = net.now;
    let big = Bytes::from(vec![0u8; wire::MAX_PAYLOAD_LEN + 1]);
    let (_, actions) = net
        .node(1)
        .router
        .send(id(2), big, None, now, &links, &mut |_| true);
    net.apply(id(1), actions);
    net.send(1, 2, b"first");
    net.send(1, 2, b"second");
    let completed = net.completed(1);
    assert!(matches!(completed[0], Err(DirectError::TooLarge { .. })));
    assert_eq!(completed[1], Err(DirectError::TooManyPending { max: 1 }));
    assert_eq!(net.node(1).router.counters().refused, 2);
}

#[test]
fn shutting_down_fails_what_is_pending_and_stray_receipts_are_counted() {
    let mut net = Net::new(2, &[(1, 2)], DirectConfig::default());
    let sent = net.send(1, 2, b"x");
    let actions = net.node(1).router.shut_down();
    assert_eq!(
        actions,
        vec![Action::Complete {
            id: sent,
            result: Err(DirectError::ShuttingDown)
        }]
    );
    net.run();
    assert_eq!(net.node(1).router.counters().stray_receipts, 1);
}
