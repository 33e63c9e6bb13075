//! Engine: fimd never monitors its own state directory, even when an entity reaches it (an
//! entity on /var/lib, say): its database changes with every commit, and a sweep that
//! recorded that would commit again, for ever.
use std::time::Duration;

use fim_tests::engine::{object_records, path_of, Engine, Workspace};

#[test]
fn an_entity_over_the_state_directory_leaves_it_out() {
    let workspace = Workspace::new("own-state");
    workspace.write_policy(&format!(
        "[settings]\nscan_idle_io = false\n\n[[entity]]\nname = \"all\"\nkind = \"linux-file\"\npath = \"{}\"\n",
        path_of(&workspace.base)
    ));
    let mut engine = Engine::start(&workspace);
    assert!(
        engine.log().contains("is left out of these entities"),
        "{}",
        engine.log()
    );
    std::fs::write(workspace.tree.join("watched"), "x").unwrap();
    engine.settle(1);
    // A full rescan meets the database after all these commits: still nothing about it.
    let scan = workspace.fim(&["scan", "--full"]);
    assert!(
        scan.status.success(),
        "{}",
        String::from_utf8_lossy(&scan.stderr)
    );
    engine.wait_for_log("requested scan finished", Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(500));
    let state = path_of(&workspace.state);
    let records = object_records(&engine.records());
    let paths: Vec<&str> = records
        .iter()
        .filter_map(|record| record["File"]["FileSystemPath"].as_str())
        .collect();
    assert!(
        paths.iter().all(|path| !path.starts_with(&state)),
        "{paths:#?}"
    );
    assert!(
        paths.contains(&path_of(&workspace.tree.join("watched")).as_str()),
        "{paths:#?}"
    );
    engine.stop();
}
