//! A client error as the attempt's [`DeliveryError`], with a short one-line message.

use std::error::Error as StdError;
use std::io;

use herald_actors::DeliveryError;
use rustls::pki_types::InvalidDnsNameError;

use super::resolver::ResolveError;
use crate::text::one_line;

/// Turns a client error into the attempt's [`DeliveryError`].
pub(super) fn classify(error: &hyper_util::client::legacy::Error) -> DeliveryError {
    let chain = error_chain(error);

    if let Some(blocked) = chain
        .iter()
        .find_map(|e| match e.downcast_ref::<ResolveError>() {
            Some(blocked @ ResolveError::Blocked { .. }) => Some(blocked),
            _ => None,
        })
    {
        return DeliveryError::Blocked(blocked.to_string());
    }
    if let Some(tls) = chain.iter().find_map(|e| e.downcast_ref::<rustls::Error>()) {
        return DeliveryError::Tls(one_line(&tls.to_string()));
    }
    if chain.iter().any(|e| e.is::<InvalidDnsNameError>()) {
        return DeliveryError::InvalidUrl("host is not a valid TLS server name".to_owned());
    }

    // The first link is hyper-util's own "client error (Connect)": say what is under it.
    let message = describe(
        chain
            .get(1..)
            .filter(|rest| !rest.is_empty())
            .unwrap_or(&chain),
    );
    let lower = message.to_ascii_lowercase();
    if lower.contains("certificate") || lower.contains("handshake") {
        DeliveryError::Tls(message)
    } else if error.is_connect() {
        DeliveryError::Connect(message)
    } else {
        DeliveryError::Io(message)
    }
}

/// The error and its causes, outermost first. `io::Error` hides a wrapped error from
/// `source()` (it returns the *wrapped error's* source), and both tokio-rustls and
/// hyper-rustls wrap in `io::Error`, so those are unwrapped with `get_ref`.
fn error_chain<'a>(error: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut chain = Vec::new();
    let mut next = Some(error);
    while let Some(current) = next {
        chain.push(current);
        if chain.len() >= 16 {
            break;
        }
        next = match current.downcast_ref::<io::Error>() {
            Some(io_error) => io_error
                .get_ref()
                .map(|inner| inner as &(dyn StdError + 'static)),
            None => current.source(),
        };
    }
    chain
}

/// Joins the messages of a chain into one short line, skipping repeats (a wrapping
/// `io::Error` displays exactly what it wraps).
fn describe(chain: &[&(dyn StdError + 'static)]) -> String {
    let mut parts: Vec<String> = Vec::new();
    for error in chain {
        let text = one_line(&error.to_string());
        if !text.is_empty() && parts.last() != Some(&text) {
            parts.push(text);
        }
    }
    let joined = parts.join(": ");
    truncate(joined, 240)
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}
