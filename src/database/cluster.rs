//! The private cluster: starts and stops a throwaway PostgreSQL cluster under a folder of the
//! project, for zero-config development and tests. Never used when `DATABASE_URL` is set.

use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output, Stdio};

use tokio::process::Command;

/// Lines of a failed command's stderr (or of the server log) kept in an error.
const TAIL_LINES: usize = 20;

/// Longest Unix socket path the server accepts (`sun_path` is 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Name of the superuser and, when paywatch runs as root, of the OS user the server runs as.
const POSTGRES: &str = "postgres";

/// A PostgreSQL cluster that paywatch runs itself, under a folder of the project.
#[derive(Debug, Clone)]
pub struct PrivateCluster {
    root: PathBuf,
    port: u16,
}

/// Why the private cluster could not be started (or stopped).
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No directory holds the PostgreSQL server programs.
    #[error(
        "could not find the PostgreSQL server programs (initdb, pg_ctl and postgres in one \
         directory); looked in: {looked}. Install the PostgreSQL server or set DATABASE_URL"
    )]
    NoBinaries {
        /// Every place that was searched, in order.
        looked: String,
    },
    /// paywatch runs as root, which PostgreSQL refuses, and there is no user to run it as.
    #[error(
        "paywatch runs as root and PostgreSQL refuses to run as root, but there is no \
         `postgres` OS user in /etc/passwd to run the private cluster as; create one or set \
         DATABASE_URL"
    )]
    NoPostgresUser,
    /// The `postgres` OS user cannot reach the cluster folder.
    #[error(
        "the `postgres` OS user cannot enter {dir}, so it cannot reach the private cluster \
         under {root}; make it traversable (e.g. `chmod o+x {dir}`), move the project, or set \
         DATABASE_URL"
    )]
    Unreachable {
        /// The first directory on the way that the `postgres` user cannot enter.
        dir: PathBuf,
        /// The cluster folder.
        root: PathBuf,
    },
    /// The cluster folder is so deep that the server's Unix socket path would be too long.
    #[error(
        "the private cluster's socket path {path} is {len} bytes, more than the {MAX_SOCKET_PATH} \
         PostgreSQL allows; put the project in a shorter path or set DATABASE_URL"
    )]
    SocketPathTooLong {
        /// The socket path that would have been used.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
    },
    /// The cluster is already running, but on another port than the one asked for.
    #[error(
        "the private cluster at {pgdata} is already running on port {running}, not on port \
         {wanted}; stop it (pg_ctl stop -D {pgdata}) or use port {running}"
    )]
    OtherPort {
        /// The cluster's data directory.
        pgdata: PathBuf,
        /// The port it listens on.
        running: u16,
        /// The port it was asked to listen on.
        wanted: u16,
    },
    /// A file-system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A PostgreSQL program ran but failed.
    #[error("`{command}` failed ({status}):\n{stderr_tail}")]
    CommandFailed {
        /// The command line that was run.
        command: String,
        /// How it ended.
        status: ExitStatus,
        /// The last lines it wrote to stderr (and, for a failed start, of the server log).
        stderr_tail: String,
    },
}

/// Returns a closure that wraps an I/O error with what was being done.
fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> ClusterError {
    let context = context.into();
    move |source| ClusterError::Io { context, source }
}

impl PrivateCluster {
    /// Describes a cluster whose files live under `root` (e.g. `<project>/.paywatch`): data in
    /// `root/pgdata`, Unix socket and log in `root`, listening on 127.0.0.1:`port`.
    ///
    /// Nothing is touched until [`ensure_running`](Self::ensure_running) or
    /// [`stop`](Self::stop) is called.
    pub fn new(root: impl Into<PathBuf>, port: u16) -> Self {
        Self {
            root: root.into(),
            port,
        }
    }

    /// URL of the maintenance database as the `postgres` superuser:
    /// `postgres://postgres@127.0.0.1:{port}/postgres`.
    pub fn admin_url(&self) -> String {
        format!("postgres://{POSTGRES}@127.0.0.1:{}/postgres", self.port)
    }

    /// Makes sure the cluster exists (runs `initdb` if the data directory is missing) and is
    /// running (`pg_ctl start -w`), then returns.
    ///
    /// Idempotent and safe to call concurrently from several processes and threads: callers are
    /// serialised by an exclusive lock on `root/cluster.lock`, and a cluster that is already
    /// running counts as success.
    pub async fn ensure_running(&self) -> Result<(), ClusterError> {
        let layout = Layout::resolve(&self.root)?;
        check_socket_path(&layout.root, self.port)?;
        tokio::fs::create_dir_all(&layout.root)
            .await
            .map_err(io_err(format!(
                "could not create {}",
                layout.root.display()
            )))?;
        let _lock = lock(&layout.lock).await?;

        let tools = Tools::discover(&layout.root).await?;
        if let RunAs::Postgres(user) = &tools.run_as {
            hand_over(&layout.root, *user).await?;
            check_reachable(&layout.root).await?;
        }

        if !exists(&layout.pgdata).await? {
            init(&tools, &layout).await?;
        }
        match status(&tools, &layout.pgdata).await? {
            Status::Running => {
                self.check_port(&layout.pgdata).await?;
                tracing::debug!(
                    "private PostgreSQL cluster at {} already running on port {}",
                    layout.pgdata.display(),
                    self.port
                );
                Ok(())
            }
            Status::Stopped => self.start(&tools, &layout).await,
        }
    }

    /// Stops the cluster (`pg_ctl stop -m fast -w`). A cluster that does not exist or is not
    /// running counts as stopped. Used by tests that start one of their own.
    pub async fn stop(&self) -> Result<(), ClusterError> {
        let layout = Layout::resolve(&self.root)?;
        // The lock file lives in root: no root, no cluster, nothing to stop.
        if !exists(&layout.root).await? {
            return Ok(());
        }
        let _lock = lock(&layout.lock).await?;
        if !exists(&layout.pgdata).await? {
            return Ok(());
        }
        let tools = Tools::discover(&layout.root).await?;
        if status(&tools, &layout.pgdata).await? == Status::Stopped {
            return Ok(());
        }
        let mut cmd = tools.command("pg_ctl");
        cmd.arg("stop")
            .arg("-D")
            .arg(&layout.pgdata)
            .args(["-m", "fast", "-w"]);
        run(cmd).await?;
        tracing::info!(
            "stopped private PostgreSQL cluster at {}",
            layout.pgdata.display()
        );
        Ok(())
    }

    /// Starts the (initialised, stopped) cluster and waits until it accepts connections.
    async fn start(&self, tools: &Tools, layout: &Layout) -> Result<(), ClusterError> {
        // pg_ctl hands these options to a shell, so the socket directory is shell-quoted.
        // fsync=off: this cluster is throwaway, for development and tests only; losing it in a
        // crash costs nothing, and skipping fsync makes the many small test commits fast.
        let mut options = OsString::from(format!(
            "-c listen_addresses=127.0.0.1 -p {} -k ",
            self.port
        ));
        options.push(shell_quote(layout.root.as_os_str()));
        options.push(" -c max_connections=200 -c fsync=off");

        let mut cmd = tools.command("pg_ctl");
        cmd.arg("start")
            .arg("-D")
            .arg(&layout.pgdata)
            .arg("-l")
            .arg(&layout.log)
            .args(["-w", "-t", "60", "-o"])
            .arg(options);
        let (description, output) = output(cmd).await?;
        if !output.status.success() {
            // Someone outside the lock (a developer with pg_ctl, say) may have won the race.
            if status(tools, &layout.pgdata).await? == Status::Running {
                return self.check_port(&layout.pgdata).await;
            }
            // pg_ctl only says "examine the log output": the reason is in the server log.
            let mut stderr_tail = tail(&String::from_utf8_lossy(&output.stderr));
            stderr_tail.push_str(&format!(
                "\n--- last lines of {} ---\n",
                layout.log.display()
            ));
            stderr_tail.push_str(&log_tail(&layout.log).await);
            return Err(ClusterError::CommandFailed {
                command: description,
                status: output.status,
                stderr_tail,
            });
        }
        tracing::info!(
            "started private PostgreSQL cluster at {} on port {}",
            layout.pgdata.display(),
            self.port
        );
        Ok(())
    }

    /// Fails if the running cluster listens on another port than ours, which would otherwise
    /// surface later as a puzzling "connection refused" on [`admin_url`](Self::admin_url).
    async fn check_port(&self, pgdata: &Path) -> Result<(), ClusterError> {
        // The pid file can vanish or be half-written while the server stops or starts; then
        // there is nothing reliable to compare, and the connection attempt will tell.
        let Ok(pid_file) = tokio::fs::read_to_string(pgdata.join("postmaster.pid")).await else {
            return Ok(());
        };
        // Line 4 of postmaster.pid is the port (see LOCK_FILE_LINE_PORT in PostgreSQL).
        let running = pid_file.lines().nth(3).and_then(|l| l.trim().parse().ok());
        match running {
            Some(running) if running != self.port => Err(ClusterError::OtherPort {
                pgdata: pgdata.to_path_buf(),
                running,
                wanted: self.port,
            }),
            _ => Ok(()),
        }
    }
}

/// Absolute paths of the cluster's files.
struct Layout {
    root: PathBuf,
    pgdata: PathBuf,
    log: PathBuf,
    lock: PathBuf,
}

impl Layout {
    fn resolve(root: &Path) -> Result<Self, ClusterError> {
        // Absolute, because the programs run with root as their working directory (the
        // caller's may be closed to the `postgres` user) and the paths are handed to them.
        let root = std::path::absolute(root).map_err(io_err(format!(
            "could not make {} absolute",
            root.display()
        )))?;
        Ok(Self {
            pgdata: root.join("pgdata"),
            log: root.join("postgres.log"),
            lock: root.join("cluster.lock"),
            root,
        })
    }
}

/// Takes the exclusive lock that serialises every start and stop of the cluster; it is held
/// until the returned file is dropped.
async fn lock(path: &Path) -> Result<File, ClusterError> {
    let path = path.to_path_buf();
    let context = format!("could not lock {}", path.display());
    // std opens files close-on-exec, so the server started while this is held does not
    // inherit the descriptor and keep the lock for its whole life.
    tokio::task::spawn_blocking(move || {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        file.lock()?;
        Ok(file)
    })
    .await
    .map_err(io::Error::other)
    .and_then(|locked| locked)
    .map_err(io_err(context))
}

/// The OS user the server programs run as.
enum RunAs {
    /// The user paywatch runs as.
    Me,
    /// The `postgres` OS user, through runuser, because initdb and postgres refuse to run as root.
    Postgres(PostgresUser),
}

/// Ids of the `postgres` OS user.
#[derive(Clone, Copy)]
struct PostgresUser {
    uid: u32,
    gid: u32,
}

/// Where the server programs are and how to run them.
struct Tools {
    bindir: PathBuf,
    run_as: RunAs,
    /// Working directory of every program: one the `postgres` user can enter.
    workdir: PathBuf,
}

impl Tools {
    async fn discover(root: &Path) -> Result<Self, ClusterError> {
        let run_as = if running_as_root().await? {
            RunAs::Postgres(postgres_user().await?)
        } else {
            RunAs::Me
        };
        Ok(Self {
            bindir: find_bindir().await?,
            run_as,
            workdir: root.to_path_buf(),
        })
    }

    /// A command that runs `program` from the server's bin directory as the right user.
    fn command(&self, program: &str) -> Command {
        let program = self.bindir.join(program);
        let mut cmd = match self.run_as {
            RunAs::Me => Command::new(program),
            RunAs::Postgres(_) => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", POSTGRES, "--"]).arg(program);
                cmd
            }
        };
        cmd.current_dir(&self.workdir)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }
}

/// Whether the effective user is root.
async fn running_as_root() -> Result<bool, ClusterError> {
    // Linux gives /proc/self to the process's effective uid; elsewhere ask id(1).
    if let Ok(meta) = tokio::fs::metadata("/proc/self").await {
        return Ok(meta.uid() == 0);
    }
    let mut cmd = Command::new("id");
    cmd.arg("-u").stdin(Stdio::null()).kill_on_drop(true);
    let stdout = run(cmd).await?;
    Ok(String::from_utf8_lossy(&stdout).trim() == "0")
}

/// Looks the `postgres` OS user up in /etc/passwd.
async fn postgres_user() -> Result<PostgresUser, ClusterError> {
    let passwd = tokio::fs::read_to_string("/etc/passwd")
        .await
        .map_err(io_err("could not read /etc/passwd"))?;
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            match fields.as_slice() {
                [name, _, uid, gid, ..] if *name == POSTGRES => Some(PostgresUser {
                    uid: uid.parse().ok()?,
                    gid: gid.parse().ok()?,
                }),
                _ => None,
            }
        })
        .ok_or(ClusterError::NoPostgresUser)
}

/// Finds the directory holding initdb, pg_ctl and postgres: `pg_config --bindir` first (it
/// names the real programs, where PATH may hold wrappers), then PATH, then the newest
/// /usr/lib/postgresql/*/bin (Debian keeps the server programs off PATH).
async fn find_bindir() -> Result<PathBuf, ClusterError> {
    let mut looked = Vec::new();

    match pg_config_bindir().await {
        Some(dir) => {
            if has_server_programs(&dir).await {
                return Ok(dir);
            }
            looked.push(format!("{} (from pg_config --bindir)", dir.display()));
        }
        None => looked.push("pg_config --bindir (no usable pg_config on PATH)".to_owned()),
    }

    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.is_absolute() && has_server_programs(&dir).await {
                return Ok(dir);
            }
            looked.push(dir.display().to_string());
        }
    }

    let versions = debian_versions().await;
    if versions.is_empty() {
        looked.push("/usr/lib/postgresql/*/bin (none)".to_owned());
    }
    for dir in versions {
        if has_server_programs(&dir).await {
            return Ok(dir);
        }
        looked.push(dir.display().to_string());
    }

    Err(ClusterError::NoBinaries {
        looked: looked.join(", "),
    })
}

/// What `pg_config --bindir` says, if pg_config is there and answers.
async fn pg_config_bindir() -> Option<PathBuf> {
    let mut cmd = Command::new("pg_config");
    cmd.arg("--bindir").stdin(Stdio::null()).kill_on_drop(true);
    let output = cmd.output().await.ok()?;
    if !output.status.success() {
        return None;
    }
    let mut bytes = output.stdout;
    while bytes.last().is_some_and(u8::is_ascii_whitespace) {
        bytes.pop();
    }
    (!bytes.is_empty()).then(|| PathBuf::from(OsString::from_vec(bytes)))
}

/// The /usr/lib/postgresql/<version>/bin directories, newest version first.
async fn debian_versions() -> Vec<PathBuf> {
    let base = Path::new("/usr/lib/postgresql");
    let Ok(mut entries) = tokio::fs::read_dir(base).await else {
        return Vec::new();
    };
    let mut versions = Vec::new();
    while let Ok(Some(entry)) = entries.next_entry().await {
        let name = entry.file_name();
        // "15" or "9.6": compare numerically, so that 10 is newer than 9.6.
        let version: Option<Vec<u32>> = name
            .to_str()
            .and_then(|name| name.split('.').map(|part| part.parse().ok()).collect());
        if let Some(version) = version {
            versions.push((version, entry.path().join("bin")));
        }
    }
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

/// Whether `dir` holds executable initdb, pg_ctl and postgres. pg_ctl runs the postgres next
/// to itself, so all three must come from one installation.
async fn has_server_programs(dir: &Path) -> bool {
    for program in ["initdb", "pg_ctl", "postgres"] {
        match tokio::fs::metadata(dir.join(program)).await {
            Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o111 != 0 => {}
            _ => return false,
        }
    }
    true
}

/// Gives `root` and everything under it to the `postgres` user, which must create and own
/// the data directory, socket and log there.
async fn hand_over(root: &Path, user: PostgresUser) -> Result<(), ClusterError> {
    let root = root.to_path_buf();
    let context = format!(
        "could not give {} and its contents to the `postgres` OS user",
        root.display()
    );
    tokio::task::spawn_blocking(move || chown_tree(&root, user))
        .await
        .map_err(io::Error::other)
        .and_then(|done| done)
        .map_err(io_err(context))
}

/// Recursively chowns `path` without following symlinks.
fn chown_tree(path: &Path, user: PostgresUser) -> io::Result<()> {
    // A running server creates and removes files while we walk: a file that is gone is fine.
    let with_path = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(with_path(e)),
    };
    if meta.uid() != user.uid || meta.gid() != user.gid {
        match std::os::unix::fs::lchown(path, Some(user.uid), Some(user.gid)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(with_path(e)),
        }
    }
    if meta.is_dir() {
        let entries = match std::fs::read_dir(path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(with_path(e)),
        };
        for entry in entries {
            chown_tree(&entry.map_err(with_path)?.path(), user)?;
        }
    }
    Ok(())
}

/// Fails clearly when the `postgres` user cannot reach `root`, instead of letting initdb or
/// the server fail later with a bare "permission denied".
async fn check_reachable(root: &Path) -> Result<(), ClusterError> {
    if postgres_can_enter(root).await? {
        return Ok(());
    }
    // Name the first directory on the way that is closed, the one to fix.
    let mut ancestors: Vec<&Path> = root.ancestors().collect();
    ancestors.reverse();
    for dir in ancestors {
        if !postgres_can_enter(dir).await? {
            return Err(ClusterError::Unreachable {
                dir: dir.to_path_buf(),
                root: root.to_path_buf(),
            });
        }
    }
    Err(ClusterError::Unreachable {
        dir: root.to_path_buf(),
        root: root.to_path_buf(),
    })
}

/// Whether the `postgres` user can enter `dir`, asked of the kernel (so groups and ACLs count)
/// rather than guessed from mode bits.
async fn postgres_can_enter(dir: &Path) -> Result<bool, ClusterError> {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", POSTGRES, "--", "test", "-x"])
        .arg(dir)
        .current_dir("/")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let (command, output) = output(cmd).await?;
    // Only test's own silent "no" means closed. runuser also exits 1 when it cannot run test
    // (not on PATH, say), but says why on stderr: that must not pass for a closed directory.
    match output.status.code() {
        Some(0) => Ok(true),
        Some(1) if output.stderr.is_empty() => Ok(false),
        _ => Err(ClusterError::CommandFailed {
            command,
            status: output.status,
            stderr_tail: tail(&String::from_utf8_lossy(&output.stderr)),
        }),
    }
}

/// Fails clearly when the socket path would be too long, which the server would otherwise
/// only report in its log.
fn check_socket_path(root: &Path, port: u16) -> Result<(), ClusterError> {
    let path = root.join(format!(".s.PGSQL.{port}"));
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(ClusterError::SocketPathTooLong { path, len });
    }
    Ok(())
}

/// Creates the cluster's data directory.
async fn init(tools: &Tools, layout: &Layout) -> Result<(), ClusterError> {
    // initdb builds in a side directory that is renamed into place only when complete, so a
    // crash halfway never leaves a pgdata that looks initialised but is not; the lock makes a
    // leftover side directory safe to remove.
    let building = layout.root.join("pgdata.initdb");
    if exists(&building).await? {
        tokio::fs::remove_dir_all(&building)
            .await
            .map_err(io_err(format!("could not remove {}", building.display())))?;
    }
    let mut cmd = tools.command("initdb");
    // --no-locale: the cluster must not depend on which locales the caller's environment
    // names and the machine has generated (a forwarded LANG often names one it has not).
    // --no-sync: throwaway cluster, as for fsync=off at start.
    // --auth=trust: no password to configure; the server listens only on 127.0.0.1 and on a
    // socket in the project folder, and holds nothing but development and test data.
    cmd.arg("-D").arg(&building).args([
        "-U",
        POSTGRES,
        "--auth=trust",
        "--encoding=UTF8",
        "--no-locale",
        "--no-sync",
        "--no-instructions",
    ]);
    run(cmd).await?;
    tokio::fs::rename(&building, &layout.pgdata)
        .await
        .map_err(io_err(format!(
            "could not move {} to {}",
            building.display(),
            layout.pgdata.display()
        )))?;
    tracing::info!(
        "initialised private PostgreSQL cluster at {}",
        layout.pgdata.display()
    );
    Ok(())
}

/// Whether the server of a data directory is running.
#[derive(Debug, PartialEq, Eq)]
enum Status {
    Running,
    Stopped,
}

/// Asks pg_ctl whether the server of `pgdata` is running.
async fn status(tools: &Tools, pgdata: &Path) -> Result<Status, ClusterError> {
    let mut cmd = tools.command("pg_ctl");
    cmd.arg("status").arg("-D").arg(pgdata);
    let (command, output) = output(cmd).await?;
    // pg_ctl status: 0 running, 3 not running; anything else (4: no usable data directory)
    // is a real problem.
    match output.status.code() {
        Some(0) => Ok(Status::Running),
        Some(3) => Ok(Status::Stopped),
        _ => Err(ClusterError::CommandFailed {
            command,
            status: output.status,
            stderr_tail: tail(&String::from_utf8_lossy(&output.stderr)),
        }),
    }
}

/// Runs `cmd`, failing unless it succeeds; returns its stdout.
async fn run(cmd: Command) -> Result<Vec<u8>, ClusterError> {
    let (command, output) = output(cmd).await?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(ClusterError::CommandFailed {
            command,
            status: output.status,
            stderr_tail: tail(&String::from_utf8_lossy(&output.stderr)),
        })
    }
}

/// Runs `cmd` to completion, capturing its output; returns its command line too, for errors.
async fn output(mut cmd: Command) -> Result<(String, Output), ClusterError> {
    let std = cmd.as_std();
    let mut description = std.get_program().to_string_lossy().into_owned();
    // Quoted where needed, so that the line can be pasted into a shell to reproduce.
    for arg in std.get_args() {
        description.push(' ');
        if arg.is_empty() || arg.as_bytes().iter().any(|b| b" '\"\\$`".contains(b)) {
            description.push_str(&shell_quote(arg).to_string_lossy());
        } else {
            description.push_str(&arg.to_string_lossy());
        }
    }
    let output = cmd
        .output()
        .await
        .map_err(io_err(format!("could not run `{description}`")))?;
    Ok((description, output))
}

/// The last lines of `text`.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}

/// The last lines of the server log, or why they could not be read.
async fn log_tail(log: &Path) -> String {
    let log = log.to_path_buf();
    // The log grows across every start of the cluster: read only its end.
    let read = tokio::task::spawn_blocking(move || -> io::Result<String> {
        let mut file = File::open(&log)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(16 * 1024)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(tail(&String::from_utf8_lossy(&bytes)))
    })
    .await
    .map_err(io::Error::other)
    .and_then(|read| read);
    read.unwrap_or_else(|e| format!("(could not read the server log: {e})"))
}

/// Whether `path` exists; an error other than "not found" is an error.
async fn exists(path: &Path) -> Result<bool, ClusterError> {
    tokio::fs::try_exists(path)
        .await
        .map_err(io_err(format!("could not look at {}", path.display())))
}

/// Quotes `value` for a POSIX shell (pg_ctl passes the server options through one).
fn shell_quote(value: &OsStr) -> OsString {
    let mut quoted = vec![b'\''];
    for &byte in value.as_bytes() {
        if byte == b'\'' {
            quoted.extend_from_slice(b"'\\''");
        } else {
            quoted.push(byte);
        }
    }
    quoted.push(b'\'');
    OsString::from_vec(quoted)
}
