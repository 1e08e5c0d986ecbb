//! Routing: each event to the endpoints of the owned partitions whose gate it has passed,
//! one ticket per partition it has deliveries in; tickets settle as their deliveries'
//! first records become durable, and an event's window permit is given back once none of
//! its tickets is open.

use super::*;
use crate::ports::RoutingSpan;

impl Router {
    /// Routes one event (or only notes a position, for a mark) to the owned partitions whose
    /// gate it has passed.
    pub(super) fn route(
        &self,
        myself: &ActorRef<Msg>,
        state: &mut State,
        event: Option<Arc<Event>>,
        position: Option<Position>,
    ) {
        if state.draining {
            // Shutting down: the event lies past the final checkpoints, so the feed hands
            // it over again after the restart.
            return;
        }
        let seq = state.next_seq;
        state.next_seq += 1;
        // Partitions for which this very change is their gate: already theirs, not routed.
        let mut at_gate: Vec<u16> = Vec::new();
        if let Some(position) = &position {
            for (&partition, part) in state.parts.iter_mut() {
                let Some(gate) = &part.gate else { continue };
                if gate.passed_by(position) {
                    if gate.checkpoint == position.checkpoint {
                        at_gate.push(partition);
                    }
                    part.gate = None;
                    part.min_seq = seq;
                }
            }
        }
        let mut open = 0u32;
        let weight = event
            .as_ref()
            .map_or(0, |event| self.window.weight(event.body.len()));
        if let Some(event) = event {
            state.metrics.events_routed.increment(1);
            // With tracing on, the routing span begins at the event's first endpoint here,
            // and the event's attempts descend from it. An event none of this daemon's
            // endpoints take leaves no span (in a cluster every daemon reads every event).
            let tracer = self.config.tracer.as_deref();
            let mut span: Option<Box<dyn RoutingSpan>> = None;
            let mut traced: Option<Arc<Event>> = None;
            let mut sent = 0usize;
            let time = position.as_ref().map_or(0, |p| p.time);
            // Tickets of this event, one per partition it has deliveries in.
            let mut tickets: Vec<(u16, u64, u32)> = Vec::new();
            let State {
                index,
                endpoints,
                parts,
                look_ups,
                next_seq,
                ..
            } = state;
            index.for_each_match(&event.event_type, |id| {
                let Some(entry) = endpoints.get(id) else {
                    return;
                };
                // A namespaced webhook takes only its namespace's events (one comparison,
                // none for the operator's webhooks, which take every event).
                if !entry.spec.accepts_namespace(event.namespace_id.as_deref()) {
                    return;
                }
                let Some(part) = parts.get(&entry.partition) else {
                    return;
                };
                if part.gate.is_some() || part.releasing || at_gate.contains(&entry.partition) {
                    return;
                }
                let ticket = match tickets.iter_mut().find(|t| t.0 == entry.partition) {
                    Some(t) => {
                        t.2 += 1;
                        t.1
                    }
                    None => {
                        let ticket = *next_seq;
                        *next_seq += 1;
                        tickets.push((entry.partition, ticket, 1));
                        ticket
                    }
                };
                sent += 1;
                let event = match tracer {
                    None => &event,
                    Some(tracer) => traced.get_or_insert_with(|| {
                        let routing = tracer.routing(&event);
                        let context = routing.context();
                        span = Some(routing);
                        match context {
                            Some(context) => Arc::new((*event).clone().with_trace(Some(context))),
                            None => event.clone(),
                        }
                    }),
                };
                let job = Job::new(event.clone(), Some(ticket));
                if part.look_up_until > 0 && (time == 0 || time <= part.look_up_until) {
                    look_ups.push(LookUp {
                        webhook_id: entry.spec.id.clone(),
                        job,
                    });
                } else {
                    entry.offer(job);
                }
            });
            if let Some(span) = span {
                span.end(sent);
            }
            for (partition, ticket, count) in tickets {
                if count == 0 {
                    continue;
                }
                open += 1;
                state.tickets.insert(ticket, (seq, partition));
                if let Some(part) = state.parts.get_mut(&partition) {
                    part.unsettled.insert(seq, count);
                    part.routed_since_write = true;
                }
            }
        }
        if open > 0 {
            state.events.insert(seq, (open, weight));
        } else {
            state.events_settled += 1;
            self.window.release(Released {
                events: 1,
                bytes: weight as usize,
            });
        }
        if let Some(position) = position {
            state.positions.insert(
                seq,
                Seen {
                    position: position.clone(),
                    read_at: std::time::Instant::now(),
                },
            );
            state.last = Some((seq, position));
        }
        if !state.look_ups.is_empty() {
            if state.look_ups.len() >= LOOK_UP_BATCH {
                self.flush_look_ups(myself, state);
            } else if !state.look_up_timer_armed {
                state.look_up_timer_armed = true;
                myself.send_after(LOOK_UP_LINGER, || Msg::LookUpTick);
            }
        }
    }
}

/// Settles one delivery per ticket: its partition's count of the event drops, and the
/// event's window permits are given back once none of its tickets is open. Tickets of
/// partitions no longer owned are gone already and ignored.
pub(super) fn settle(window: &Window, state: &mut State, tickets: Vec<u64>) {
    let mut released = Released::default();
    for ticket in tickets {
        let Some(&(seq, partition)) = state.tickets.get(&ticket) else {
            continue;
        };
        if let Some(part) = state.parts.get_mut(&partition) {
            if let Some(open) = part.unsettled.get_mut(&seq) {
                *open = open.saturating_sub(1);
                if *open == 0 {
                    part.unsettled.remove(&seq);
                    state.tickets.remove(&ticket);
                    released += close_ticket(state, seq);
                }
            }
        }
    }
    if released.events > 0 {
        state.events_settled += released.events as u64;
        window.release(released);
    }
}

/// One of the event's tickets is closed; when that was its last, its permits are free.
pub(super) fn close_ticket(state: &mut State, seq: u64) -> Released {
    let Some((open, weight)) = state.events.get_mut(&seq) else {
        return Released::default();
    };
    *open -= 1;
    if *open == 0 {
        let bytes = *weight as usize;
        state.events.remove(&seq);
        Released { events: 1, bytes }
    } else {
        Released::default()
    }
}
