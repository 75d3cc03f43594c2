"""
The run folder, out/<run>/: one run, one process writing it, nothing already made lost.

claim_run_folder() runs first thing in every training script, before any data or model is
loaded: it creates the folder and tries a write in it (a bad --out_dir fails at once, not after
the model is built), takes the folder's lock, clears temp files that a killed save left behind,
and refuses to start a new run over an existing one unless told to resume it or to overwrite it.
Nothing is deleted then: with --overwrite=true the previous run's files go only at begin(), once
the new run's inputs have all been read and checked, so a run that stops on bad input loses
nothing. A run that stops before begin() leaves no trace: the lock file goes, and so does the
folder if the run created it.

The lock is an flock on out_dir/.lock, held by the open file until the process exits: a second
run into the same folder stops at once, and a lock left by a killed process needs no cleaning
(the kernel releases it with the process), so the next run simply takes it over.
"""

import fcntl
import glob
import os
import weakref

from cli import UserError

# What a run writes into its folder: --overwrite=true removes these, and nothing else.
RUN_FILES = ("ckpt.pt", "best.pt", "metrics.jsonl", "samples.md", "frontier.json")


def check_writable(out_dir):
    """Create out_dir and write a file in it, so that a folder that cannot be written (a read-only
    mount, a path through a file, /proc) fails now, before any work, with one clear line."""
    try:
        os.makedirs(out_dir, exist_ok=True)
        probe = os.path.join(out_dir, f".write_test.{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise UserError(f"--out_dir={out_dir}: cannot write there ({e.strerror or e})") from None


class RunFolder:
    """A claimed run folder. The lock is held until release(), or until this object is garbage
    collected or the process exits, whichever comes first."""

    def __init__(self, path, lock_file=None, created=False, previous=()):
        self.path, self.previous = path, list(previous)
        self._release = weakref.finalize(self, unlock, path, lock_file, created)

    def begin(self):
        """The inputs are checked and the run starts writing: with --overwrite=true, the previous
        run's files are removed now (the new run may not write all of them again)."""
        for name in self.previous + [os.path.basename(p) for p in glob.glob(os.path.join(self.path, "*.png"))]:
            os.remove(os.path.join(self.path, name))
        self.previous = []

    def release(self):
        self._release()


def unlock(path, lock_file, created):
    if lock_file is None:
        return
    os.remove(os.path.join(path, ".lock"))
    lock_file.close()
    if created and not os.listdir(path):  # stopped before writing anything: leave no empty folder behind
        os.rmdir(path)


def claim_run_folder(out_dir, resume, overwrite, rt):
    """Check and lock out_dir for this run. Only the master process does it: under torchrun the
    other processes never write to the folder. Returns the RunFolder to keep until the run ends."""
    if not rt.is_master:
        return RunFolder(out_dir)
    if resume and overwrite:
        raise UserError("--resume=true and --overwrite=true contradict each other: pick one")
    created = not os.path.exists(out_dir)
    check_writable(out_dir)

    lock_file = open(os.path.join(out_dir, ".lock"), "a+")
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.seek(0)
        owner = lock_file.read().strip() or "another process"
        lock_file.close()
        raise UserError(f"--out_dir={out_dir} is in use by {owner}; wait for it to finish, or pick another "
                        f"--out_dir") from None
    lock_file.seek(0)
    lock_file.truncate()
    lock_file.write(f"process {os.getpid()}\n")
    lock_file.flush()
    folder = RunFolder(out_dir, lock_file, created)  # from here on, an error unlocks it (and cleans up)

    # temp files of a save that was killed mid-write (save_checkpoint writes NAME.tmp.PID, then renames)
    for stale in glob.glob(os.path.join(out_dir, "*.tmp.*")):
        os.remove(stale)

    previous = [name for name in RUN_FILES if os.path.exists(os.path.join(out_dir, name))]
    if previous and not resume and not overwrite:
        raise UserError(f"--out_dir={out_dir} already holds a run ({', '.join(previous)}); continue it with "
                        f"--resume=true, replace it with --overwrite=true, or pick another --out_dir")
    if overwrite:
        folder.previous = previous
    return folder
