"""
The output folder, out/<run>/: one run, one process writing it, nothing already made lost.

claim_run_folder() runs first thing in every script that writes files (the training stages,
eval.py, export_hf.py, bench.py, pipeline.py), before any data or model is loaded. Each kind of
script names the files it writes (`outputs`: names or fnmatch patterns); then:

- the folder is created and a write is tried in it (a bad --out_dir fails at once);
- its lock is taken (out_dir/.lock, an flock held while the process lives): a second process
  into the same folder stops at once, and a lock left by a killed process is simply taken over;
- a folder that holds anything this script does not write (a training run, for eval.py; a
  user's own files) is refused: outputs never land among other files;
- a folder that holds this script's outputs from an earlier run is refused, unless told to resume
  that run (--resume=true) or to replace it (--overwrite=true).

A refused run changes nothing in the folder: the checks come before any deletion, and the lock
file (and the folder, if this run created it) go again. Nothing is deleted at claim time; with
--overwrite=true the earlier outputs go only at begin(), once the new run's inputs have all been
read and checked, and then only the files this script writes. Temp files that a killed save
left behind (NAME.tmp.PID, NAME.tmp.png, of this script's own outputs) go at begin() too.
"""

import fcntl
import fnmatch
import os
import weakref

from cli import UserError

# What the training stages write into their run folder (pretrain ... grpo): --overwrite=true
# removes these, and nothing else.
TRAINING_RUN = ("ckpt.pt", "best.pt", "metrics.jsonl", "samples.md", "loss.png", "scorecard.png", "reward.png",
                "dpo.png", "ppo.png", "grpo.png", "rloo.png")


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


def is_output(name, outputs):
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in outputs)


def is_temp_of(name, outputs):
    """A temp file of one of the outputs (save_checkpoint's NAME.tmp.PID, a plot's NAME.tmp.png)."""
    stem, sep, rest = name.partition(".tmp")
    return bool(sep) and is_output(stem, outputs) and (rest == "" or rest.startswith("."))


class RunFolder:
    """A claimed output folder. The lock is held until release(), or until this object is garbage
    collected or the process exits, whichever comes first."""

    def __init__(self, path, outputs=(), lock_file=None, created=False):
        self.path, self.outputs = path, tuple(outputs)
        self.previous = []  # an earlier run's outputs, removed at begin() (--overwrite=true)
        self._release = weakref.finalize(self, unlock, path, lock_file, created)

    def begin(self):
        """The inputs are checked and the run starts writing: stale temp files of its outputs go,
        and with --overwrite=true the earlier run's output files (not folders: a folder of outputs
        is a run of its own, with its own rules)."""
        for name in sorted(os.listdir(self.path)):
            path = os.path.join(self.path, name)
            if os.path.isfile(path) and (is_temp_of(name, self.outputs) or name in self.previous):
                os.remove(path)
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


def claim_run_folder(out_dir, resume, overwrite, rt=None, outputs=TRAINING_RUN, resumable=True):
    """Check and lock out_dir for a script that writes `outputs` there. Only the master process does
    it (rt: the runtime; None for a single-process script): under torchrun the other processes
    never write to the folder. Returns the RunFolder to keep until the run ends."""
    if rt is not None and not rt.is_master:
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
    folder = RunFolder(out_dir, outputs, lock_file, created)  # from here on, an error unlocks it (and cleans up)

    names = sorted(n for n in os.listdir(out_dir) if not n.startswith("."))
    others = [n for n in names if not is_output(n, outputs) and not is_temp_of(n, outputs)]
    if others:
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        raise UserError(f"--out_dir={out_dir} holds files this script does not write ({shown}): it writes only "
                        f"into a new or empty folder, or one of its own earlier runs; pick another --out_dir")
    previous = [n for n in names if is_output(n, outputs)]
    if previous and not resume and not overwrite:
        again = "continue it with --resume=true, replace it" if resumable else "replace it"
        raise UserError(f"--out_dir={out_dir} already holds a run ({', '.join(previous)}); {again} with "
                        f"--overwrite=true, or pick another --out_dir")
    if overwrite:
        folder.previous = previous
    return folder
