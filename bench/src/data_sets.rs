//! Data sets kept between runs (`crm-bench run --data-sets DIR`): node A's
//! database right after loading, so that a later run at the same size
//! starts node A on a copy instead of loading again (a quarter of an hour
//! at 1,000,000 clients becomes a file copy). For looking into one figure;
//! the runs recorded as the project's figures load afresh and measure the
//! import.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The node's database in its data folder. Once the node has stopped, its
/// WAL is checkpointed and empty, so this file is the whole data set.
const DATABASE: &str = "crm.sqlite3";
/// The WAL beside it, which must be empty when the database is kept.
const WAL: &str = "crm.sqlite3-wal";
/// How many records besides the clients the set holds (contact persons,
/// deals, invoices and their lines: the lines' count is drawn at random).
/// Written last, so a set whose saving was cut short is not used.
const RELATED: &str = "related-records";

/// The data set of one size, kept in its own folder.
pub struct KeptDataSet {
    dir: PathBuf,
}

impl KeptDataSet {
    /// The set of `size` clients under `root`.
    pub fn of(root: &Path, size: u64) -> KeptDataSet {
        KeptDataSet {
            dir: root.join(size.to_string()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether a whole set is kept there.
    pub fn exists(&self) -> bool {
        self.dir.join(RELATED).is_file() && self.dir.join(DATABASE).is_file()
    }

    /// Keeps the database of the stopped node whose data folder is `data`,
    /// which holds `related` records besides the clients.
    pub fn save(&self, data: &Path, related: u64) -> anyhow::Result<()> {
        let wal = data.join(WAL);
        let wal_len = std::fs::metadata(&wal).map_or(0, |m| m.len());
        anyhow::ensure!(
            wal_len == 0,
            "{} holds {wal_len} bytes: the node did not stop cleanly, so its database alone is not the data set",
            wal.display()
        );
        let marker = self.dir.join(RELATED);
        if marker.exists() {
            std::fs::remove_file(&marker)
                .with_context(|| format!("removing {}", marker.display()))?;
        }
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        copy(&data.join(DATABASE), &self.dir.join(DATABASE))?;
        std::fs::write(&marker, related.to_string())
            .with_context(|| format!("writing {}", marker.display()))
    }

    /// Puts a copy of the kept database into the data folder `data` (new or
    /// empty); answers how many records besides the clients it holds.
    pub fn restore(&self, data: &Path) -> anyhow::Result<u64> {
        let marker = self.dir.join(RELATED);
        let text = std::fs::read_to_string(&marker)
            .with_context(|| format!("reading {}", marker.display()))?;
        let related = text
            .trim()
            .parse()
            .with_context(|| format!("{} is not a count: {text:?}", marker.display()))?;
        std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
        copy(&self.dir.join(DATABASE), &data.join(DATABASE))?;
        Ok(related)
    }
}

fn copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_set_comes_back_whole_and_a_half_saved_one_is_not_used() {
        let root = tempfile::tempdir().expect("a temporary folder");
        let node = root.path().join("node");
        std::fs::create_dir_all(&node).expect("the node's folder");
        std::fs::write(node.join(DATABASE), b"the data set").expect("a database");
        std::fs::write(node.join(WAL), b"").expect("an empty WAL");

        let kept = KeptDataSet::of(&root.path().join("kept"), 1000);
        assert!(!kept.exists());
        kept.save(&node, 150).expect("saved");
        assert!(kept.exists());

        let again = root.path().join("again");
        assert_eq!(kept.restore(&again).expect("restored"), 150);
        assert_eq!(
            std::fs::read(again.join(DATABASE)).expect("copied"),
            b"the data set"
        );

        std::fs::remove_file(kept.dir().join(RELATED)).expect("removed");
        assert!(!kept.exists(), "a set without its count was cut short");
    }

    #[test]
    fn a_node_that_left_a_wal_is_not_kept() {
        let root = tempfile::tempdir().expect("a temporary folder");
        std::fs::write(root.path().join(DATABASE), b"pages").expect("a database");
        std::fs::write(root.path().join(WAL), b"frames").expect("a WAL");
        let kept = KeptDataSet::of(&root.path().join("kept"), 10);
        let err = kept.save(root.path(), 1).expect_err("a WAL with frames");
        assert!(
            format!("{err:#}").contains("did not stop cleanly"),
            "{err:#}"
        );
        assert!(!kept.exists());
    }
}
