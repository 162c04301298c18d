"""The database schema as numbered migrations (PRAGMA user_version).

Migrations are frozen SQL: once released, a step is never edited, only followed by a new one, because a
user's database may sit at any earlier version. These migrations are the one definition of the tables: the
queue reads and writes them with plain SQL (see `storage.db` for why there is no ORM).
"""

from __future__ import annotations

_V1_QUEUE = """
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    state TEXT NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'running', 'interrupted', 'succeeded', 'failed', 'cancelled')),
    state_reason TEXT,
    held INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    priority INTEGER NOT NULL DEFAULT 0,
    seq INTEGER NOT NULL,
    labels TEXT NOT NULL DEFAULT '[]',
    gpus INTEGER NOT NULL DEFAULT 1 CHECK (gpus >= 1),
    nodes INTEGER NOT NULL DEFAULT 1 CHECK (nodes >= 1),
    max_retries INTEGER NOT NULL DEFAULT 2,
    retry_on TEXT NOT NULL DEFAULT 'comm,worker_lost',
    retry_backoff REAL NOT NULL DEFAULT 30,
    retries_used INTEGER NOT NULL DEFAULT 0,
    not_before REAL,
    task TEXT NOT NULL,
    size TEXT NOT NULL,
    frame_num INTEGER NOT NULL,
    ckpt_dir TEXT NOT NULL,
    offload_model INTEGER,
    t5_fsdp INTEGER NOT NULL DEFAULT 0,
    dit_fsdp INTEGER NOT NULL DEFAULT 0,
    t5_cpu INTEGER NOT NULL DEFAULT 0,
    ulysses_size INTEGER NOT NULL DEFAULT 1,
    ring_size INTEGER NOT NULL DEFAULT 1,
    sample_solver TEXT NOT NULL,
    sample_steps INTEGER NOT NULL,
    sample_shift REAL NOT NULL,
    sample_guide_scale REAL NOT NULL,
    base_seed INTEGER NOT NULL,
    first_frame TEXT NOT NULL,
    last_frame TEXT NOT NULL,
    first_frame_src TEXT NOT NULL,
    last_frame_src TEXT NOT NULL,
    prompt TEXT NOT NULL,
    neg_prompt TEXT,
    save_file TEXT,
    preview_every INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    queued_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    current_attempt_id INTEGER,
    attempts_count INTEGER NOT NULL DEFAULT 0,
    output_path TEXT,
    failure_class TEXT
);
CREATE INDEX jobs_runnable ON jobs (state, held, priority DESC, seq);
CREATE INDEX jobs_finished ON jobs (finished_at);

CREATE TABLE job_deps (
    job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    after_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE RESTRICT,
    PRIMARY KEY (job_id, after_id)
);
CREATE INDEX job_deps_after ON job_deps (after_id);

CREATE TABLE attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'running'
        CHECK (state IN ('running', 'succeeded', 'failed', 'cancelled', 'interrupted')),
    worker_host TEXT NOT NULL,
    worker_pid INTEGER NOT NULL,
    worker_started REAL NOT NULL,
    pgid INTEGER,
    pgid_started REAL,
    device TEXT NOT NULL,
    gpus TEXT NOT NULL,
    nproc INTEGER NOT NULL,
    master_port INTEGER,
    log_dir TEXT NOT NULL,
    save_file TEXT,
    exit_code INTEGER,
    failing_rank INTEGER,
    failure_class TEXT,
    failure_message TEXT,
    stage TEXT,
    step INTEGER,
    steps_total INTEGER,
    sec_per_it REAL,
    eta_seconds REAL,
    progress_at REAL,
    memory TEXT NOT NULL DEFAULT '{}',
    peak_memory TEXT NOT NULL DEFAULT '{}',
    stage_seconds TEXT NOT NULL DEFAULT '{}',
    engine_version TEXT,
    started_at REAL NOT NULL,
    ended_at REAL,
    UNIQUE (job_id, number)
);
CREATE INDEX attempts_state ON attempts (state);

CREATE TABLE workers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    pid_started REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'stopped')),
    pool TEXT NOT NULL DEFAULT '{}',
    started_at REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    stopped_at REAL
);

CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

_V2_CATALOGUE = """
CREATE TABLE videos (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id INTEGER REFERENCES jobs (id) ON DELETE SET NULL,
    attempt_id INTEGER REFERENCES attempts (id) ON DELETE SET NULL,
    path TEXT NOT NULL UNIQUE,
    size_bytes INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    frames INTEGER NOT NULL,
    fps REAL NOT NULL,
    duration REAL NOT NULL,
    task TEXT NOT NULL,
    size TEXT NOT NULL,
    prompt TEXT NOT NULL,
    neg_prompt TEXT,
    seed INTEGER NOT NULL,
    sample_steps INTEGER NOT NULL,
    sample_shift REAL NOT NULL,
    sample_guide_scale REAL NOT NULL,
    sample_solver TEXT NOT NULL,
    ckpt_dir TEXT NOT NULL,
    ckpt_fingerprint TEXT,
    engine_version TEXT,
    world_size INTEGER,
    ulysses_size INTEGER,
    t5_fsdp INTEGER,
    dit_fsdp INTEGER,
    recipe TEXT NOT NULL DEFAULT '{}',
    stage_seconds TEXT NOT NULL DEFAULT '{}',
    total_seconds REAL,
    peak_memory TEXT NOT NULL DEFAULT '{}',
    rating INTEGER CHECK (rating IS NULL OR rating BETWEEN 1 AND 5),
    favourite INTEGER NOT NULL DEFAULT 0,
    tags TEXT NOT NULL DEFAULT '[]',
    notes TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL
);
CREATE INDEX videos_created ON videos (created_at);
CREATE INDEX videos_job ON videos (job_id);
"""

# Full-text search over what people remember a video by (its prompt, tags and notes), kept in step with the
# videos table by triggers so that no writer can forget it. `files` names the thumbnails, contact sheet,
# sidecar and input-frame copies that belong to a row.
_V3_CATALOGUE_SEARCH = """
ALTER TABLE videos ADD COLUMN files TEXT NOT NULL DEFAULT '{}';
CREATE VIRTUAL TABLE videos_fts USING fts5 (prompt, tags, notes, content = 'videos', content_rowid = 'id');
INSERT INTO videos_fts (rowid, prompt, tags, notes) SELECT id, prompt, tags, notes FROM videos;
CREATE TRIGGER videos_fts_insert AFTER INSERT ON videos BEGIN
    INSERT INTO videos_fts (rowid, prompt, tags, notes) VALUES (new.id, new.prompt, new.tags, new.notes);
END;
CREATE TRIGGER videos_fts_delete AFTER DELETE ON videos BEGIN
    INSERT INTO videos_fts (videos_fts, rowid, prompt, tags, notes)
        VALUES ('delete', old.id, old.prompt, old.tags, old.notes);
END;
CREATE TRIGGER videos_fts_update AFTER UPDATE OF prompt, tags, notes ON videos BEGIN
    INSERT INTO videos_fts (videos_fts, rowid, prompt, tags, notes)
        VALUES ('delete', old.id, old.prompt, old.tags, old.notes);
    INSERT INTO videos_fts (rowid, prompt, tags, notes) VALUES (new.id, new.prompt, new.tags, new.notes);
END;
"""

# Dependencies of three kinds, as Slurm's afterok, afterany and afternotok (storage.deps); and how close each
# render's first and last frames came to the inputs (PSNR, dB), on the attempt that made it and its video.
_V4_DEPENDENCY_KINDS_AND_PSNR = """
ALTER TABLE job_deps ADD COLUMN kind TEXT NOT NULL DEFAULT 'ok' CHECK (kind IN ('ok', 'any', 'fail'));
ALTER TABLE attempts ADD COLUMN psnr_first REAL;
ALTER TABLE attempts ADD COLUMN psnr_last REAL;
ALTER TABLE videos ADD COLUMN psnr_first REAL;
ALTER TABLE videos ADD COLUMN psnr_last REAL;
"""

# Multi-node renders and the Slurm backend: the job's collective timeout (engine flag --collective_timeout,
# seconds; no value: the engine's default), and per attempt the launcher that ran it and, on Slurm, its job id,
# state, the reason it waits ("why pending") and the nodes it runs on.
_V5_LAUNCHERS = """
ALTER TABLE jobs ADD COLUMN collective_timeout REAL;
ALTER TABLE attempts ADD COLUMN backend TEXT NOT NULL DEFAULT 'local';
ALTER TABLE attempts ADD COLUMN slurm_job TEXT;
ALTER TABLE attempts ADD COLUMN slurm_state TEXT;
ALTER TABLE attempts ADD COLUMN slurm_reason TEXT;
ALTER TABLE attempts ADD COLUMN node_list TEXT;
ALTER TABLE attempts ADD COLUMN slurm_elapsed TEXT;
ALTER TABLE attempts ADD COLUMN slurm_max_rss TEXT;
"""

# --dtype (engine.flags): the precision recipe; 'auto' resolves per device in the engine.
_V6_DTYPE = """
ALTER TABLE jobs ADD COLUMN dtype TEXT NOT NULL DEFAULT 'auto';
"""

# The GPU fast path (issue 14): CFG-parallel, the attention kernel and regional compilation, per job; the
# attention kernel an attempt really ran (its start event's `attention`), since `auto` depends on the machine.
_V7_FAST_PATH = """
ALTER TABLE jobs ADD COLUMN cfg_size INTEGER NOT NULL DEFAULT 1;
ALTER TABLE jobs ADD COLUMN attn TEXT NOT NULL DEFAULT 'auto';
ALTER TABLE jobs ADD COLUMN compile INTEGER NOT NULL DEFAULT 0;
ALTER TABLE attempts ADD COLUMN attention TEXT;
"""

# Warm groups (issue 13): the group folder an attempt was handed to and its job number there (what a restarted
# worker needs to re-attach to it, or to requeue it if the group died before the job began), whether the
# engine was already loaded when it began (1 warm, 0 cold, NULL: not known yet or a one-shot run before this
# version), and the load seconds that saved.
_V8_WARM_GROUPS = """
ALTER TABLE attempts ADD COLUMN group_dir TEXT;
ALTER TABLE attempts ADD COLUMN group_seq INTEGER;
ALTER TABLE attempts ADD COLUMN warm INTEGER;
ALTER TABLE attempts ADD COLUMN load_saved_s REAL;
"""

# MIGRATIONS[k] takes a database from user_version k to k + 1.
MIGRATIONS: tuple[str, ...] = (
    _V1_QUEUE,
    _V2_CATALOGUE,
    _V3_CATALOGUE_SEARCH,
    _V4_DEPENDENCY_KINDS_AND_PSNR,
    _V5_LAUNCHERS,
    _V6_DTYPE,
    _V7_FAST_PATH,
    _V8_WARM_GROUPS,
)
LATEST = len(MIGRATIONS)
