//! Test helpers: the store's key layout written out from the crate docs (to reach
//! under the API with sled directly), a sample document, and a directory copy.

use std::path::Path;

use persister_core::{ActorId, DocumentState};

/// `01 u16be(len) id`
pub fn manifest_key(id: &[u8]) -> Vec<u8> {
    with_tag(0x01, id)
}

/// `02 u16be(len) id 01`
pub fn document_key(id: &[u8]) -> Vec<u8> {
    let mut key = with_tag(0x02, id);
    key.push(0x01);
    key
}

/// `02 u16be(len) id 02 escape(actor) 00 00 u64be(seq)`
pub fn change_key(id: &[u8], actor: &[u8], seq: u64) -> Vec<u8> {
    let mut key = with_tag(0x02, id);
    key.push(0x02);
    for &b in actor {
        key.push(b);
        if b == 0 {
            key.push(0xff);
        }
    }
    key.extend_from_slice(&[0, 0]);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// `02 u16be(len) id 03 peer`
pub fn sync_state_key(id: &[u8], peer: &[u8]) -> Vec<u8> {
    let mut key = with_tag(0x02, id);
    key.push(0x03);
    key.extend_from_slice(peer);
    key
}

fn with_tag(tag: u8, id: &[u8]) -> Vec<u8> {
    let mut key = vec![tag];
    key.extend_from_slice(&u16::try_from(id.len()).unwrap().to_be_bytes());
    key.extend_from_slice(id);
    key
}

/// `u32be(crc32c(key ++ payload)) ++ payload`
pub fn frame(key: &[u8], payload: &[u8]) -> Vec<u8> {
    let crc = crc32c::crc32c_append(crc32c::crc32c(key), payload);
    let mut value = crc.to_be_bytes().to_vec();
    value.extend_from_slice(payload);
    value
}

/// Opens a closed store's database with sled directly.
pub fn open_raw(path: &Path) -> RawDb {
    let db = sled::Config::new()
        .path(path)
        .flush_every_ms(None)
        .open()
        .expect("open the database with sled");
    RawDb(Some(db), path.to_path_buf())
}

/// A database opened with sled itself, closed with
/// [`persister_sled::close_database`] when dropped, so the store can be opened at once.
pub struct RawDb(Option<sled::Db>, std::path::PathBuf);

impl std::ops::Deref for RawDb {
    type Target = sled::Db;

    fn deref(&self) -> &sled::Db {
        self.0.as_ref().expect("open until dropped")
    }
}

impl Drop for RawDb {
    fn drop(&mut self) {
        if let Some(db) = self.0.take() {
            persister_sled::close_database(db, &self.1).expect("sled let go of its lock");
        }
    }
}

/// A document with a bit of everything, for the tests that damage stores: actors that
/// are prefixes of each other and hold NUL bytes, empty and large values.
pub fn sample_document(tag: u8) -> DocumentState {
    let mut state = DocumentState::new();
    let actors = [&[tag][..], &[tag, 0], &[tag, 0, 1], &[0, tag]];
    for (i, actor) in actors.iter().enumerate() {
        for seq in [1u64, 2, 3, 255, 256, 1000] {
            let len = (seq as usize * 7 + i * 13) % 400;
            state.apply_write(persister_core::Write::InsertChange {
                actor: ActorId::new(actor.to_vec()),
                seq,
                value: vec![tag ^ seq as u8; len],
            });
        }
    }
    state.apply_write(persister_core::Write::SetDocument(vec![tag; 3000]));
    for peer in [&b"peer"[..], b"", b"peer\0two"] {
        state.apply_write(persister_core::Write::SetSyncState {
            peer: peer.to_vec(),
            state: vec![tag.wrapping_add(peer.len() as u8); 40],
        });
    }
    state
}

/// Copies the directory `from`, with everything in it, to `to` (a store's files, to
/// damage or restore a copy).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
