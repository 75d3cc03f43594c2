"""README.md and docs/: every relative link and image path resolves, every #anchor names a heading
of the file it points into (GitHub's heading slugs), and every command line they quote names a
script and flags that script knows."""

import glob
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from conftest import ROOT

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def markdown_files():
    return [os.path.join(ROOT, "README.md"), os.path.join(ROOT, "data", "skills", "README.md")] + \
        sorted(glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True))


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped (hyphens and underscores
    kept), spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path):
    with open(path) as f:
        return {slug(line.lstrip("#")) for line in f if line.startswith("#")}


def test_slug_by_hand():
    assert slug("The skills track: step-by-step working, `python pipeline.py --track=skills` (20 min)") == \
        "the-skills-track-step-by-step-working-python-pipelinepy---trackskills-20-min"
    assert slug("Where the task skills stand") == "where-the-task-skills-stand"


def test_every_relative_link_and_image_resolves():
    checked = 0
    for page in markdown_files():
        text = open(page).read()
        text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)  # code blocks are not links
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            resolved = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
            assert os.path.exists(resolved), f"{os.path.relpath(page, ROOT)}: {target} does not exist"
            if anchor and resolved.endswith(".md"):
                assert anchor in anchors(resolved), f"{os.path.relpath(page, ROOT)}: no heading for #{anchor}"
            checked += 1
    assert checked > 20


# `python script.py --flag=value ...` anywhere in the README, code blocks and inline code alike
COMMAND = re.compile(r"python3? ((?:[\w.-]+/)*[\w-]+\.py)((?:\s+--[\w-]+(?:=(?:\"[^\"]*\"|'[^']*'|[^\s`|)]*))?)*)")


def test_every_command_in_the_readme_and_the_chapters_names_a_script_and_flags_it_knows():
    """Each script's --help lists its flags as --name=default: every flag a command in README.md or
    docs/ passes (the chapters' exercises included) must be among them (a renamed or removed option
    breaks the command a reader copies)."""
    commands = [(os.path.relpath(page, ROOT), script, flags) for page in markdown_files()
                for script, flags in COMMAND.findall(open(page).read())]
    scripts = sorted({script for _, script, _ in commands})
    assert len(commands) > 100 and len(scripts) > 15
    for script in scripts:
        assert os.path.exists(os.path.join(ROOT, script)), script

    def help_text(script):
        done = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
        return done.stdout + done.stderr
    with ThreadPoolExecutor(2) as pool:
        helps = dict(zip(scripts, pool.map(help_text, scripts)))
    for page, script, flags in commands:
        for name in re.findall(r"--([\w-]+)", re.sub(r"\"[^\"]*\"|'[^']*'", "", flags)):
            assert name == "help" or f"--{name}=" in helps[script], \
                f"{page}: python {script} --{name}: not an option of {script}"
