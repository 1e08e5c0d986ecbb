//! Owned partitions: granted (with the gate the feed must pass first), dropped (revoked,
//! fenced, or handed over), and handed over cleanly (drained, recorded, final checkpoint).

use super::*;

/// One owned partition.
pub struct Part {
    pub(super) epoch: u64,
    /// Not yet passed in the feed: events up to it are not this partition's to route.
    pub(super) gate: Option<Position>,
    /// Positions before this sequence number are not this partition's checkpoints.
    pub(super) min_seq: u64,
    /// Events with deliveries here not yet durable: sequence number → open deliveries.
    pub(super) unsettled: BTreeMap<u64, u32>,
    /// Look deliveries of events up to this cluster time up in the ledger first.
    pub(super) look_up_until: u64,
    /// The checkpoint last stored, and when its position was read.
    pub(super) written: Option<bytes::Bytes>,
    pub(super) written_read_at: Option<std::time::Instant>,
    /// When its checkpoint was last handed to the store (`None`: not yet by this engine).
    pub(super) last_write: Option<tokio::time::Instant>,
    /// An event routed a delivery here since that write.
    pub(super) routed_since_write: bool,
    /// Being handed over: no new deliveries, no more periodic checkpoints.
    pub(super) releasing: bool,
    /// Set when the hand-over began: events from this sequence number on were not routed
    /// here, so the final checkpoint stays before them.
    pub(super) until_seq: Option<u64>,
}

impl Part {
    pub(super) fn new(grant: &Grant, next_seq: u64, last: Option<(u64, &Position)>) -> Self {
        let (gate, min_seq) = match (&grant.from, last) {
            (Some(from), _) => (Some(from.clone()), next_seq),
            // No checkpoint yet: the partition starts where the feed is now.
            (None, Some((seq, _))) => (None, seq),
            (None, None) => (None, next_seq),
        };
        Self {
            epoch: grant.epoch,
            gate,
            min_seq,
            unsettled: BTreeMap::new(),
            look_up_until: grant.look_up_until,
            written: grant.from.as_ref().map(|p| p.checkpoint.clone()),
            written_read_at: None,
            last_write: None,
            routed_since_write: false,
            releasing: false,
            until_seq: None,
        }
    }
}

/// A feed position and when it was read.
pub struct Seen {
    pub(super) position: Position,
    pub(super) read_at: std::time::Instant,
}

impl Router {
    pub(super) async fn grant(
        &self,
        myself: &ActorRef<Msg>,
        state: &mut State,
        grants: Vec<Grant>,
        rewind: Option<Rewind>,
    ) -> Result<(), ActorProcessingErr> {
        let rewound_after = match &rewind {
            Some(Rewind::After(bytes)) => Some(bytes.clone()),
            _ => None,
        };
        if matches!(rewind, Some(Rewind::Lost)) {
            for part in state.parts.values_mut() {
                part.gate = None;
                part.min_seq = state.next_seq;
            }
        } else if rewind.is_some() {
            // The feed re-reads from earlier: what the partitions already owned have routed
            // must not reach them twice. They wait until the feed passes where it was.
            if let Some((_, last)) = &state.last {
                for part in state.parts.values_mut() {
                    if part.gate.is_none() && rewound_after.as_ref() != Some(&last.checkpoint) {
                        part.gate = Some(last.clone());
                    }
                }
            }
        }
        if !grants.is_empty() {
            info!(
                partitions = grants.len(),
                from_checkpoints = grants.iter().filter(|g| g.from.is_some()).count(),
                looking_up = grants.iter().filter(|g| g.look_up_until > 0).count(),
                rewind = rewind.as_ref().map(Rewind::describe),
                "partitions granted"
            );
        }
        for grant in grants {
            if let Some(part) = state.parts.get_mut(&grant.partition) {
                // Renewed under a new epoch (the store refused the old one): keep going.
                part.epoch = grant.epoch;
                continue;
            }
            let last = state.last.as_ref().map(|(seq, p)| (*seq, p));
            let mut part = Part::new(&grant, state.next_seq, last);
            let gate = part.gate.as_ref().map(|g| &g.checkpoint);
            if rewound_after.is_some() && gate == rewound_after.as_ref() {
                // The feed starts just after this very position.
                part.gate = None;
            } else if rewind.is_none() && gate.is_some() && gate == last.map(|(_, p)| &p.checkpoint)
            {
                // The feed stands exactly there: everything from now on is the partition's.
                part.gate = None;
                part.min_seq = last.map_or(state.next_seq, |(seq, _)| seq);
            }
            debug!(
                partition = grant.partition,
                epoch = grant.epoch,
                from_checkpoint = grant.from.is_some(),
                looks_up = grant.look_up_until > 0,
                "partition granted"
            );
            state.parts.insert(grant.partition, part);
            let specs: Vec<Arc<WebhookSpec>> = state
                .specs
                .values()
                .filter(|spec| partition_of(&spec.id) == grant.partition)
                .cloned()
                .collect();
            for spec in specs {
                // The previous owner may have left pending deliveries: read them back.
                self.start_endpoint(myself, state, spec, true).await?;
            }
        }
        Ok(())
    }

    /// Stops a partition's endpoints and forgets its bookkeeping: its unsettled deliveries
    /// are another daemon's now (or the final checkpoint already lies before them).
    pub(super) fn drop_partition(&self, state: &mut State, partition: u16, why: &str) {
        let Some(part) = state.parts.remove(&partition) else {
            return;
        };
        let ids: Vec<Arc<str>> = state
            .endpoints
            .iter()
            .filter(|(_, e)| e.partition == partition)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &ids {
            if let Some(entry) = detach(state, id) {
                // Before the stop, which the actor hears only after the turn it may be in:
                // from here on nothing of this partition's starts.
                entry.backlog.fence();
                entry.actor.stop(Some(why.to_owned()));
            }
        }
        state.tickets.retain(|_, (_, p)| *p != partition);
        state
            .look_ups
            .retain(|l| partition_of(&l.webhook_id) != partition);
        let mut released = Released::default();
        for seq in part.unsettled.keys() {
            released += close_ticket(state, *seq);
        }
        self.window.release(released);
        info!(
            partition,
            endpoints = ids.len(),
            "partition dropped ({why})"
        );
    }

    /// Starts handing partitions over: no new deliveries for them; drains their endpoints'
    /// in-flight attempts and syncs the ledger writer, then finishes in `ReleaseDrained`.
    pub(super) fn release(
        &self,
        myself: &ActorRef<Msg>,
        state: &mut State,
        partitions: Vec<u16>,
        reply: RpcReplyPort<Result<Vec<u16>, LedgerError>>,
    ) {
        let partitions: Vec<u16> = partitions
            .into_iter()
            .filter(|p| state.parts.contains_key(p))
            .collect();
        for partition in &partitions {
            if let Some(part) = state.parts.get_mut(partition) {
                part.releasing = true;
                part.until_seq = Some(state.next_seq);
            }
        }
        let endpoints: Vec<_> = state
            .endpoints
            .values()
            .filter(|e| partitions.contains(&e.partition))
            .map(|e| e.actor.clone())
            .collect();
        let writer = state.ledger_writer.clone();
        let myself = myself.clone();
        tokio::spawn(async move {
            drain(endpoints).await;
            let _ = writer
                .call(ledger_writer::Msg::Sync, Some(Duration::from_secs(30)))
                .await;
            let _ = myself.cast(Msg::ReleaseDrained(partitions, reply));
        });
    }

    /// Writes the released partitions' final checkpoints and drops them.
    pub(super) async fn finish_release(
        &self,
        state: &mut State,
        partitions: &[u16],
    ) -> Result<Vec<u16>, LedgerError> {
        let finals: Vec<PartitionCheckpoint> = partitions
            .iter()
            .filter_map(|&p| due_checkpoint(state, p, true))
            .map(|due| due.checkpoint)
            .collect();
        let result = if finals.is_empty() {
            Ok(Vec::new())
        } else {
            self.ledger.checkpoint(finals).await
        };
        for &partition in partitions {
            self.drop_partition(state, partition, "released");
        }
        result
    }
}
