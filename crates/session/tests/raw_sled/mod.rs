//! Opening a store's directory with sled itself, for tests that write what an older
//! release (or damage) left there.

/// Opens the database with sled itself, retrying briefly: a store just dropped may still
/// hold sled's lock for a moment while its background threads stop.
pub fn raw_sled(path: &std::path::Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match sled::open(path) {
            Ok(db) => return db,
            Err(error) if std::time::Instant::now() < deadline => {
                eprintln!("sled still locked ({error}); retrying");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(error) => panic!("sled cannot open {}: {error}", path.display()),
        }
    }
}
