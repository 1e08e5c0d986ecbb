//! The records one turn of the endpoint actor makes, sent to the ledger writer as one
//! message at the end of the turn (before a sweep can ask the writer for a barrier, so a
//! sweep still sees this endpoint's earlier writes). Whatever is left when the actor stops,
//! even by a crash, is sent as it is dropped.

use metrics::Counter;
use ractor::ActorRef;

use crate::delivery::DeliveryRecord;
use crate::ledger_writer;

pub(super) struct Outbox {
    writer: ActorRef<ledger_writer::Msg>,
    records: Vec<DeliveryRecord>,
    retire: Vec<u64>,
    /// `herald_deliveries_recorded_ahead_total`.
    recorded_ahead: Counter,
}

impl Outbox {
    pub(super) fn new(writer: ActorRef<ledger_writer::Msg>, recorded_ahead: Counter) -> Self {
        Self {
            writer,
            records: Vec::new(),
            retire: Vec::new(),
            recorded_ahead,
        }
    }

    /// `retire` is the feed sequence number the record settles once durable, if any.
    pub(super) fn push(&mut self, record: DeliveryRecord, retire: Option<u64>) {
        self.records.push(record);
        self.retire.extend(retire);
    }

    /// A `pending` record of a delivery no attempt has ended yet (spilled, or held but
    /// likely to wait); `retire` as in [`Outbox::push`].
    pub(super) fn push_ahead(&mut self, record: DeliveryRecord, retire: Option<u64>) {
        self.recorded_ahead.increment(1);
        self.push(record, retire);
    }

    pub(super) fn flush(&mut self) {
        if self.records.is_empty() {
            return;
        }
        let _ = self.writer.cast(ledger_writer::Msg::Write {
            records: std::mem::take(&mut self.records),
            retire: std::mem::take(&mut self.retire),
        });
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.flush();
    }
}
