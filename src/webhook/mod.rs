//! The webhook model: one typed document and one set of rules for every place a webhook is
//! written or read.
//!
//! A webhook reaches herald three ways — a request to the API, an entry of a `herald apply`
//! file (which the CLI turns into API requests), and a document in the `webhooks`
//! collection, possibly written there by hand. All three are judged by [`validate`] against
//! the limits of [`limits`], so that what the API accepts, `apply` accepts, and what the
//! store hands the engine obeys the same numbers:
//!
//! - [`limits`]: every bound and reserved name, in one place;
//! - [`validate`]: [`WebhookFields`] (the fields as given) checked under [`Rules`], each
//!   problem a [`FieldError`] naming its path (`headers.X-Foo`, `event_types[1]`);
//! - [`document`]: [`WebhookDocument`], the contract's §2 document as herald writes it, and
//!   the ids it carries.

pub mod document;
pub mod limits;
pub mod validate;

pub use document::{new_id, WebhookDocument};
pub use validate::{validate, Catalog, FieldError, Origin, Rules, WebhookFields};

#[cfg(test)]
mod tests;
