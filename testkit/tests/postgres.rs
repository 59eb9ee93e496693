#[test]
fn starts_postgres_and_creates_databases() {
    let first = taskloom_testkit::fresh_postgres_database().expect("database");
    let second = taskloom_testkit::fresh_postgres_database().expect("database");
    assert_ne!(first, second);
    let out = std::process::Command::new("psql")
        .arg(&first)
        .args(["-tAc", "SELECT current_database()"])
        .output()
        .expect("psql");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        first.rsplit('/').next().unwrap()
    );
}
