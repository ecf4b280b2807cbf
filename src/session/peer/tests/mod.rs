//! Peer tasks driven end to end on in-memory streams, with the torrent's real task and disk
//! thread behind them: what a remote peer sees and what the torrent reports.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::*;
use crate::session::torrent::TorrentConfig;
use crate::wire::extended::ExtHandshake;
use crate::wire::message::{BlockRef, Message};
use crate::wire::metadata::MetadataMessage;

mod fault;
mod limits;
mod pex;
mod port;
mod serve;
