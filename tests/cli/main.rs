//! Integration tests of gbdfl: the real binary, real SQLite files in temp
//! dirs, real HTTP over 127.0.0.1 against the built-in emulator.

mod harness;

mod audit;
mod audit_first;
mod batch;
mod billing;
mod bulk;
mod central;
mod concurrent;
mod conventions;
mod demo;
mod docs;
mod fetch;
mod format;
mod hostile;
mod html;
mod import;
mod init;
mod layers;
mod migrate;
mod network;
mod os_user;
mod paid_calls;
mod pg;
mod privacy;
mod ranges;
mod report;
mod secrets;
mod show;
mod sync;
mod tamper;
