//! Endpoint DNS names, as AWS gives an interface endpoint (issue 19), and the server that
//! answers them inside each consumer network.
//!
//! - [`names`]: which names a network has and their addresses (pure; `pl dns`, zone files).
//! - [`answer`]: a query's bytes in, the answer's bytes out (pure; hickory-proto).
//! - [`netns`]: a network's DNS address on a macvlan of its interface, in a namespace of
//!   its own, with the sockets bound there.
//! - [`server`]: the UDP and TCP service on those sockets, on a thread of its own, with
//!   the counters; swapped whole on reload and when health changes.

pub mod answer;
mod names;
pub mod netns;
pub mod server;

pub use self::{
    answer::{Book, DeadZones},
    names::{Kind, Name, NetworkNames, by_network, names, network_id, zone_file},
    server::{DnsStats, Servers},
};
