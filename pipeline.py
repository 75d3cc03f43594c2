"""
The whole pipeline on the default world in one command, and a report a teacher can hand out.

    python pipeline.py                        # world -> pretrain -> sft -> reward -> dpo -> ppo -> eval, ~15 min CPU
    python pipeline.py --track=skills         # data/skills -> pretrain -> sft -> grpo -> eval, ~20 min, out_skills/
    python pipeline.py --stages=eval,report --overwrite=true   # redo only some stages (the others' outputs must exist)
    python pipeline.py --smoke=True --out_dir=out/smoke   # every stage for a few steps with a tiny model, ~1 min
    python pipeline.py --profile=true        # each stage under profiler.py: where its time went, in the report

Each stage runs as its own script, exactly the command a user would type (printed before it
runs), so the pipeline is nothing but the course in order:
    1. data/world/prepare.py  the world's text, tokenizer, chats, preference pairs, prompts, eval suites
    2. pretrain.py            next-token prediction: the base model learns the world's facts
    3. sft.py                 instruction tuning on chats: format, skills, tools, persona (and the demos' flaws)
    4. reward.py              a Bradley-Terry reward model from the preference pairs
    5. dpo.py                 alignment straight from the pairs, from the SFT model
    6. ppo.py                 RLHF against the reward model, from the SFT model (DPO's alternative)
    7. eval.py                the behaviour scorecard of every stage on the held-out suites
    8. inspect_tokens.py      what each stage changed in one reply, token by token (out_dir/tokens/)
Then out_dir/report.md: the scorecard across stages, each stage's key figures, its plots and its time
(with --profile=true, also where each stage's time went: forward, backward, optimizer, evaluation, ...),
and out_dir/report.html, the same run on one self-contained page for a projector: the pipeline
picture, the scorecard with each change coloured, every plot, each stage's reply to one prompt per
behaviour side by side, and the token views. `--stages=report` rewrites both for a finished run.

The skills track (--track=skills) runs the same scripts on data/skills (data/skills/prepare.py):
arithmetic worked column by column and comparisons that need two facts, each also asked for the
answer alone; GRPO with the verifier (--reward=gold) instead of the reward model, DPO and PPO; and
eval.py with pass@1..16 on the held-out suites.
"""

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Annotated, Optional

import torch

from cli import Folder, OneOf, UserError, parse_config, repo_path, run_main
from evaluation import LOWER_IS_BETTER, ROWS
from html_report import (embedded_image, esc, pipeline_html, replies_html, scorecard_html, token_view_html,
                         write_page)
from metrics import read_metrics
from run_folder import claim_run_folder

STAGES = ["world", "pretrain", "sft", "reward", "dpo", "ppo", "grpo", "eval", "tokens", "report"]
OUTPUT_STAGES = ["pretrain", "sft", "reward", "dpo", "ppo", "grpo", "eval", "tokens"]  # each writes out_dir/<stage>
# The two tracks: the alignment story on the default world, and the skills that instruction tuning
# teaches beyond answering (step-by-step working, reasoning over facts) on the skills track's data
TRACKS = {
    "alignment": dict(stages=["world", "pretrain", "sft", "reward", "dpo", "ppo", "eval", "tokens", "report"],
                      prepare="data/world/prepare.py", data_dir="data/world", out_dir="out"),
    "skills": dict(stages=["world", "pretrain", "sft", "grpo", "eval", "tokens", "report"],
                   prepare="data/skills/prepare.py",
                   data_dir="data/skills", out_dir="out_skills"),
}
# what pipeline.py itself writes into out_dir, beside the stages' folders
PIPELINE_OUTPUTS = (*OUTPUT_STAGES, "*.log", "*.profile.json", "report.md", "report.html", "pipeline_times.json")

# Smoke run: every stage's loop, eval and save for a few steps (a tiny model from scratch): checks an install
FEW_STEPS = ["--max_steps=4", "--batch_size=4", "--micro_batch_size=2", "--eval_interval=2"]
# The periodic evaluations of the pipeline's runs, fewer than the scripts make alone (they change
# no training step): the reward model's val pairs at 0, 550 and 1100 of 1100 steps, DPO's val pairs,
# KL and scorecard sample at 0, 160 and 320 of 320, PPO's scorecard at 0, 25 and 50 of 50
PIPELINE_ARGS = {
    "alignment": {"reward": ["--eval_interval=550"], "dpo": ["--eval_interval=160"], "ppo": ["--eval_interval=25"]},
    # the skills track's budget (about 20 min on 2 CPU cores, docs/07-skills-track.md): 1600 pretraining steps (the
    # column facts, 4 min), 1200 SFT steps (3 min), 50 GRPO iterations of 32 prompts x 8 replies
    # (7-11 min): rollouts at temperature 0.7, so that their errors are the model's real doubts
    # rather than tail tokens, with the SFT demos' NLL mixed in (PPO-ptx) to hold the column facts
    "skills": {"pretrain": ["--max_steps=1600", "--eval_interval=400", "--n_samples=2"],
               "sft": ["--max_steps=1200", "--eval_interval=600"],
               "grpo": ["--group_size=8", "--rollout_batch=32", "--minibatch_size=128", "--micro_batch_size=32",
                        "--temperature=0.7", "--learning_rate=3e-5", "--min_lr=3e-5", "--beta=0.05",
                        "--max_new_tokens=160", "--max_steps=50", "--eval_interval=25", "--eval_per_suite=50"]},
}
# the skills track's held-out suites that eval.py samples 16 times per prompt for pass@1..16
PASS_SUITES = ["arithmetic_steps", "arithmetic_direct", "compare_steps", "compare_direct"]
SMOKE_ARGS = {
    "pretrain": FEW_STEPS + ["--n_layer=2", "--n_head=2", "--n_embd=32", "--eval_batches=1", "--n_samples=1",
                             "--sample_tokens=8"],
    "sft": FEW_STEPS + ["--eval_per_suite=1"],
    "reward": FEW_STEPS + ["--correlation_samples=8"],
    "dpo": FEW_STEPS + ["--kl_samples=4", "--eval_per_suite=1"],
    "ppo": ["--max_steps=2", "--rollout_batch=4", "--minibatch_size=4", "--micro_batch_size=2",
            "--max_new_tokens=8", "--eval_interval=2", "--eval_per_suite=1"],
    "grpo": ["--max_steps=2", "--rollout_batch=2", "--group_size=2", "--minibatch_size=4", "--micro_batch_size=2",
             "--max_new_tokens=8", "--eval_interval=2", "--eval_per_suite=1"],
    "eval": ["--per_suite=2"],
    "tokens": ["--max_new_tokens=8", "--group_size=2", "--index=0"],
}


@dataclass
class PipelineConfig:
    track: Annotated[str, OneOf(tuple(TRACKS))] = "alignment"  # alignment: the default world's story (reward
    #                         model, DPO, PPO); skills: step-by-step working and reasoning over facts, with GRPO
    stages: str = ""  # comma-separated stages to run, in pipeline order (empty: every stage of the track)
    data_dir: Optional[Folder] = None  # the track's files (empty: data/world, or data/skills for the skills track)
    out_dir: Optional[Folder] = None  # each stage writes out_dir/<stage>, the report out_dir/report.md
    #                                   (empty: out, or out_skills for the skills track)
    smoke: bool = False  # a few steps per stage with a tiny model: checks that everything runs, in a minute
    overwrite: bool = False  # replace the runs already in out_dir/<stage> (without it, a rerun stops before it starts)
    device: str = "auto"  # passed to every training script
    world_args: str = ""  # extra options for the track's prepare.py, space-separated (e.g. "--n_people=100")
    profile: bool = False  # run each stage under profiler.py; the report shows where each stage's time went


def shown_path(path):
    """Relative to the repository root when inside it (the scripts resolve it from there), so the
    commands in the log and the report are the ones a user types."""
    relative = os.path.relpath(path, repo_path())
    return path if relative.startswith("..") else relative


def stage_commands(cfg):
    """Each stage's command line (python + script + options), wired output to input: the data,
    pretraining and SFT as in every track, then the track's own stages."""
    d, o = shown_path(cfg.data_dir), shown_path(cfg.out_dir)
    dev = [f"--device={cfg.device}"] if cfg.device != "auto" else []
    commands = {
        "world": [TRACKS[cfg.track]["prepare"], f"--out_dir={d}", *cfg.world_args.split()],
        "pretrain": ["pretrain.py", f"--data_dir={d}", f"--out_dir={o}/pretrain", *dev],
        "sft": ["sft.py", f"--init_from={o}/pretrain", f"--data={d}/sft_train.jsonl",
                f"--val_data={d}/sft_val.jsonl", f"--out_dir={o}/sft", *dev],
        **(skills_commands if cfg.track == "skills" else alignment_commands)(d, o, dev),
    }
    for stage, args in (SMOKE_ARGS if cfg.smoke else PIPELINE_ARGS[cfg.track]).items():
        if stage in commands:
            commands[stage] += args
    if cfg.overwrite:
        for stage in OUTPUT_STAGES:
            if stage in commands:
                commands[stage].append("--overwrite=true")
    return commands


def alignment_commands(d, o, dev):
    """The alignment track after SFT: the reward model, DPO and PPO from the SFT model."""
    return {
        "reward": ["reward.py", f"--init_from={o}/sft", f"--data={d}/prefs_train.jsonl",
                   f"--val_data={d}/prefs_val.jsonl", f"--out_dir={o}/reward", *dev],
        "dpo": ["dpo.py", f"--init_from={o}/sft", f"--data={d}/prefs_train.jsonl", f"--val_data={d}/prefs_val.jsonl",
                f"--out_dir={o}/dpo", *dev],
        "ppo": ["ppo.py", f"--init_from={o}/sft", f"--reward_model={o}/reward", f"--prompts={d}/rl_prompts.jsonl",
                f"--nll_data={d}/prefs_train.jsonl", f"--out_dir={o}/ppo", *dev],
        "eval": ["eval.py", f"--checkpoints={o}/pretrain,{o}/sft,{o}/dpo,{o}/ppo", f"--data_dir={d}",
                 f"--out_dir={o}/eval", *dev],
        "tokens": ["inspect_tokens.py", f"--run={o}", f"--data_dir={d}", f"--out_dir={o}/tokens", *dev],
    }


def skills_commands(d, o, dev):
    """The skills track after SFT: GRPO with the verifier's reward (no reward model, DPO or PPO),
    and the evaluation with pass@k on the held-out suites."""
    return {
        "grpo": ["grpo.py", f"--init_from={o}/sft", "--reward=gold", f"--prompts={d}/rl_prompts.jsonl",
                 "--nll_coef=0.2", f"--nll_data={d}/sft_train.jsonl", f"--out_dir={o}/grpo", *dev],
        "eval": ["eval.py", f"--checkpoints={o}/pretrain,{o}/sft,{o}/grpo", f"--data_dir={d}",
                 f"--out_dir={o}/eval", "--pass_at_k=16", f"--pass_suites={','.join(PASS_SUITES)}", *dev],
        # a product, the kind of problem the track's model still gets wrong, so that its group mixes right and wrong
        "tokens": ["inspect_tokens.py", f"--run={o}", f"--data_dir={d}", "--suite=arithmetic_steps", "--index=14",
                   "--group_size=8", "--views=logprobs,grpo", f"--out_dir={o}/tokens", *dev],
    }


def run_stage(name, command, log_path, profile=None):
    """Run one stage script, its output shown live and kept in a log; returns its wall time.
    profile: a path for profiler.py's JSON, to run the stage under it."""
    shown = " ".join(["python", *command])
    print(f"\n=== {name}: {shown}", flush=True)
    t0 = time.perf_counter()
    profiler = [repo_path("profiler.py"), f"--json={profile}"] if profile else []
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, *profiler, repo_path(command[0]), *command[1:]],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        for line in proc.stdout:
            print(line, end="", flush=True)
            log.write(line)
        proc.wait()
    if proc.returncode != 0:
        raise UserError(f"stage {name} failed (exit {proc.returncode}); its output is in {log_path}")
    return time.perf_counter() - t0


# ----------------------------------------------------------------------------- report


def series(rows, key):
    return [r[key] for r in rows if key in r]


def fmt(x, spec=".3f"):
    return "-" if x is None else format(x, spec)


def span(rows, key, spec=".3f", window=1):
    """'first -> last' value of a logged metric; with window > 1, means over the first and the last
    window values (a noisy per-iteration metric such as PPO's mean score over 32 rollouts)."""
    values = series(rows, key)
    if not values:
        return "-"
    first, last = values[:window], values[-window:]
    return f"{fmt(sum(first) / len(first), spec)} -> {fmt(sum(last) / len(last), spec)}"


def final(rows, key, spec=".3f"):
    values = series(rows, key)
    return fmt(values[-1], spec) if values else "-"


def stage_figures(out):
    """One line of key figures per stage, from its metrics.jsonl."""
    m = {stage: read_metrics(os.path.join(out, stage)) for stage in ("pretrain", "sft", "reward", "dpo", "ppo", "grpo")}
    figures = {}
    if m["pretrain"]:
        figures["pretrain"] = (f"val loss {span(m['pretrain'], 'val/loss')}; "
                               f"{final(m['pretrain'], 'tokens_per_s', ',.0f')} tokens/s")
    if m["sft"]:
        figures["sft"] = f"chat val loss (assistant tokens) {span(m['sft'], 'val/loss')}"
    if m["reward"]:
        categories = sorted({k for r in m["reward"] for k in r if k.startswith("val/accuracy/")})
        per_category = ", ".join(f"{k.split('/')[-1]} {final(m['reward'], k, '.0%')}" for k in categories)
        figures["reward"] = (f"held-out pair accuracy {final(m['reward'], 'val/accuracy', '.1%')} ({per_category}); "
                             f"Spearman vs gold reward {final(m['reward'], 'val/spearman_vs_gold')}")
    if m["dpo"]:
        figures["dpo"] = (f"val reward margin {span(m['dpo'], 'val/rewards/margins')}, accuracy "
                          f"{final(m['dpo'], 'val/rewards/accuracies', '.1%')}; KL to SFT {final(m['dpo'], 'eval/kl')}")
    if m["ppo"]:
        figures["ppo"] = (f"rollouts' reward-model score {span(m['ppo'], 'objective/scores', '+.2f', 10)}, gold "
                          f"reward {span(m['ppo'], 'objective/gold_reward', '+.2f', 10)}, KL to SFT per reply "
                          f"{span(m['ppo'], 'objective/kl', '.2f', 10)} (means of the first and last 10 iterations)")
    if m["grpo"]:
        figures["grpo"] = (f"rollouts' verifier accuracy {span(m['grpo'], 'objective/accuracy', '.0%', 10)}, KL to "
                           f"SFT per reply {span(m['grpo'], 'objective/kl', '.2f', 10)} (means of the first and last "
                           f"10 iterations)")
    return figures


PLOTS = [("pretrain", "loss.png"), ("sft", "loss.png"), ("sft", "scorecard.png"), ("reward", "reward.png"),
         ("dpo", "dpo.png"), ("dpo", "scorecard.png"), ("ppo", "ppo.png"), ("ppo", "scorecard.png"),
         ("grpo", "grpo.png"), ("grpo", "scorecard.png"), ("eval", "pass_at_k.png")]
TITLES = {"alignment": "The pipeline on the built-in world", "skills": "The skills track: step-by-step working"}


def time_breakdown(out):
    """Report lines: the phases of each profiled stage (profiler.py's JSON), seconds per phase."""
    profiles = {stage: os.path.join(out, f"{stage}.profile.json") for stage in STAGES}
    profiles = {stage: path for stage, path in profiles.items() if os.path.exists(path)}
    if not profiles:
        return []
    data = {stage: json.load(open(path)) for stage, path in profiles.items()}
    phases = sorted({p for d in data.values() for p in d["samples"]},
                    key=lambda p: -sum(d["samples"].get(p, 0) / sum(d["samples"].values()) * d["seconds"]
                                       for d in data.values()))
    lines = ["", "## Where the time went", "",
             "Seconds per phase of each stage, from `profiler.py` (a sample of the Python stack every 20 ms).", "",
             "| phase | " + " | ".join(data) + " |", "|---|" + "---:|" * len(data)]
    for phase in phases:
        cells = [f"{d['samples'].get(phase, 0) / sum(d['samples'].values()) * d['seconds']:.0f}" for d in data.values()]
        lines.append(f"| {phase} | " + " | ".join(cells) + " |")
    lines.append("| **wall time** | " + " | ".join(f"**{d['seconds']:.0f}**" for d in data.values()) + " |")
    return lines


def run_provenance():
    """Where the report's figures come from: the code's commit (marked when the tree has changes
    of its own), the machine's CPU or GPU, torch's version and the date, for every figure quoted
    from a run to name its run."""
    def git(*args):
        try:
            return subprocess.run(["git", "-C", repo_path("."), *args], capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    commit = git("rev-parse", "--short", "HEAD") or "unknown (not a git checkout)"
    if git("status", "--porcelain", "--untracked-files=no"):
        commit += " with local changes"
    cpu = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    device = f"{cpu}, {os.cpu_count()} CPU cores" + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available()
                                                     else "")
    return f"Commit {commit}; {device}; torch {torch.__version__}; {time.strftime('%Y-%m-%d', time.gmtime())} (UTC)."


def write_report(cfg, commands, times):
    out = cfg.out_dir
    scorecard = os.path.join(out, "eval", "scorecard.md")
    if not os.path.exists(scorecard):
        raise UserError(f"{scorecard} is missing: run the eval stage first (--stages=eval,report)")
    with open(scorecard) as f:
        table = f.read().strip().replace(f"{shown_path(out)}/", "")  # columns named by stage, not by path
    figures = stage_figures(out)
    timing_path = os.path.join(out, "pipeline_times.json")
    if os.path.exists(timing_path):  # times of stages run earlier, for a partial rerun
        with open(timing_path) as f:
            times = {**json.load(f), **times}
    with open(timing_path, "w") as f:
        json.dump(times, f)

    provenance = (run_provenance() + f" Total time {sum(times.values()) / 60:.1f} min."
                  + (" SMOKE RUN (tiny models)." if cfg.smoke else ""))
    lines = [f"# {TITLES[cfg.track]}", "", provenance, "",
             "## What each stage taught: held-out behaviour scorecard", "",
             "Share of right replies per behaviour on the world's held-out suites (greedy, tools on); the base "
             "model (pretrain) is probed with completions where a behaviour allows it.", "", table, "",
             "## Stages", "", "| stage | time | key figures | command |", "|---|---:|---|---|"]
    for stage in TRACKS[cfg.track]["stages"][:-1]:
        t = f"{times[stage] / 60:.1f} min" if stage in times else "-"
        lines.append(f"| {stage} | {t} | {figures.get(stage, '')} | `python {' '.join(commands[stage])}` |")
    lines += ["", "## Plots", ""]
    for stage, name in PLOTS:
        if os.path.exists(os.path.join(out, stage, name)):
            lines.append(f"![{stage} {name}]({stage}/{name})")
    if os.path.exists(os.path.join(out, "ppo", "samples.md")):
        lines += ["", "PPO rollouts with their reward-model and gold scores: [ppo/samples.md](ppo/samples.md)."]
    if os.path.exists(os.path.join(out, "grpo", "samples.md")):
        lines += ["", "GRPO rollouts with their scores: [grpo/samples.md](grpo/samples.md)."]
    if os.path.exists(os.path.join(out, "tokens", "tokens.html")):
        lines += ["", "What each stage changed in one reply, token by token: [tokens/tokens.html](tokens/tokens.html)",
                  ""]
        lines += [f"![{name}](tokens/{name})" for name in sorted(os.listdir(os.path.join(out, "tokens")))
                  if name.startswith("tokens_") and name.endswith(".png")]
    lines += time_breakdown(out)
    path = os.path.join(out, "report.md")
    with open(path + ".tmp", "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(path + ".tmp", path)
    write_html_report(cfg, commands, provenance, times, figures)
    return path


def write_html_report(cfg, commands, provenance, times, figures):
    """out_dir/report.html: the run on one page that opens from disk (plots embedded, no script,
    nothing fetched): the pipeline picture, the scorecard with the changes coloured, the plots,
    each stage's reply to one prompt per behaviour, and the token views of out_dir/tokens."""
    out = cfg.out_dir
    stages = TRACKS[cfg.track]["stages"][:-1]
    boxes = [(s, f"{times[s] / 60:.1f} min" if s in times else "", figures.get(s, "")) for s in stages]
    with open(os.path.join(out, "eval", "scorecard.json")) as f:
        results = {os.path.basename(path.rstrip("/")): r for path, r in json.load(f).items()}
    parents = {"sft": "pretrain", "dpo": "sft", "ppo": "sft", "grpo": "sft"}
    body = [f"<p>{esc(provenance)}</p>", "<h2>The pipeline</h2>", pipeline_html(boxes),
            "<h2>What each stage taught: the held-out scorecard</h2>",
            "<p>Share of right replies per behaviour (greedy, tools on). In brackets and coloured: the change "
            "from the stage it was trained from (green better, red worse).</p>",
            scorecard_html({s: r["scores"] for s, r in results.items()}, ROWS, parents, LOWER_IS_BETTER),
            "<h2>Each stage's reply, side by side</h2>",
            "<p>The first held-out prompt of each behaviour (the base model completes its probe instead).</p>",
            replies_html({s: r["examples"] for s, r in results.items()},
                         list(dict.fromkeys(k for r in results.values() for k in r["examples"])))]
    tokens_path = os.path.join(out, "tokens", "tokens.json")
    if os.path.exists(tokens_path):
        with open(tokens_path) as f:
            tokens = json.load(f)
        body += ["<h2>Token by token: where each stage acted</h2>",
                 f"<p>Prompt: <b>{esc(tokens['prompt'])}</b> (from <code>python inspect_tokens.py</code>; hover a "
                 f"token for its numbers)</p>"]
        body += [token_view_html(view) for view in tokens["views"]]
    body.append("<h2>Plots</h2>")
    for stage, name in PLOTS:
        if os.path.exists(os.path.join(out, stage, name)):
            body.append(f"<h3>{esc(stage)}: {esc(name)}</h3>" + embedded_image(os.path.join(out, stage, name),
                                                                             f"{stage} {name}"))
    body += ["<h2>Commands</h2>",
             "<pre>" + esc("\n".join(f"python {' '.join(commands[s])}" for s in stages)) + "</pre>"]
    return write_page(os.path.join(out, "report.html"), TITLES[cfg.track], "\n".join(body))


def main():
    cfg = parse_config(PipelineConfig, description=__doc__)
    track = TRACKS[cfg.track]
    cfg.data_dir = cfg.data_dir or repo_path(track["data_dir"])
    cfg.out_dir = cfg.out_dir or repo_path(track["out_dir"])
    stages = cfg.stages.split(",") if cfg.stages else track["stages"]
    unknown = [s for s in stages if s not in track["stages"]]
    if unknown:
        raise UserError(f"unknown stage(s) {', '.join(unknown)} for --track={cfg.track}; its stages are "
                        f"{','.join(track['stages'])}")
    # out_dir holds the stages' folders and the pipeline's own report, times and logs: like a run
    # that resumes, an earlier pipeline's are kept (a partial rerun reads them), and each stage
    # asked for must not hold a run unless it is to be replaced (its script replaces it)
    out_folder = claim_run_folder(cfg.out_dir, True, False, outputs=PIPELINE_OUTPUTS)
    taken = [f"{cfg.out_dir}/{s}" for s in OUTPUT_STAGES if s in stages and os.path.isdir(os.path.join(cfg.out_dir, s))
             and any(not name.startswith(".") for name in os.listdir(os.path.join(cfg.out_dir, s)))]
    if taken and not cfg.overwrite:
        raise UserError(f"{', '.join(taken)} already hold runs; replace them with --overwrite=true, or pick another "
                        f"--out_dir")
    out_folder.begin()
    commands, times = stage_commands(cfg), {}
    for stage in track["stages"][:-1]:
        if stage in stages:
            profile = os.path.join(cfg.out_dir, f"{stage}.profile.json") if cfg.profile else None
            times[stage] = run_stage(stage, commands[stage], os.path.join(cfg.out_dir, f"{stage}.log"), profile)
    if "report" in stages:
        path = write_report(cfg, commands, times)
        print(f"\nwrote {path} and {os.path.join(os.path.dirname(path), 'report.html')}")
    out_folder.release()


if __name__ == "__main__":
    run_main(main)
