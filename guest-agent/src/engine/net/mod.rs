//! Container networking: docker's network model (the predefined `bridge`,
//! `host` and `none` networks and user-defined bridge networks), the same in
//! native placement and inside the machine VM.
//!
//! - [`store`]: network records, address allocation, endpoints;
//! - [`netns`]: per-container network namespaces;
//! - [`link`]: bridges, veth pairs, addresses and routes over rtnetlink;
//! - [`nat`]: egress masquerade and network isolation with nftables;
//! - [`proxy`]: published ports (a userland proxy in the container's shim);
//! - [`direct`]: where a published port leads, for the agent's `PortConnect`;
//! - [`dns`]: the embedded DNS server at 127.0.0.11 on user networks;
//! - [`sockets`]: socket helpers those two share.

pub mod container;
pub mod direct;
pub mod dns;
pub mod link;
pub mod nat;
pub mod netns;
pub mod proxy;
pub mod sockets;
pub mod store;
