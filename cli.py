"""
The command line every script shares: a config dataclass becomes --key=value flags (typed from the
fields, --help from the field comments, --config=PRESET files), paths resolve against the
repository root, and a user's mistake becomes one `error: ...` line and exit status 1.
"""

import ast
import dataclasses
import difflib
import inspect
import math
import os
import signal
import sys
import textwrap
import typing

import torch.distributed as dist

ROOT = os.path.dirname(os.path.abspath(__file__))


def repo_path(*parts):
    """A path inside this repository, whatever the working directory."""
    return os.path.join(ROOT, *parts)


# Config fields typed Path (a file) or Folder are resolved against the repository root (unless
# absolute), so that `python pretrain.py` means the same files from any working directory. A Path
# that names an existing folder, or a Folder that names an existing file, is refused at parse time.
Path = typing.NewType("Path", str)
Folder = typing.NewType("Folder", str)


def resolve_path(path):
    return path if path is None or os.path.isabs(path) else os.path.normpath(os.path.join(ROOT, path))


# Allowed values, declared with a field's type: `batch_size: PositiveInt = 16`, or
# `dropout: Annotated[float, Range(0, 1, hi_open=True)] = 0.0`. parse_config checks every value
# (flags, presets and defaults alike) and names the allowed range in its error.
@dataclasses.dataclass(frozen=True)
class Range:
    lo: typing.Optional[float] = None
    hi: typing.Optional[float] = None
    lo_open: bool = False  # lo itself excluded
    hi_open: bool = False  # hi itself excluded

    def allows(self, value):
        # written so that NaN fails every bound
        return ((self.lo is None or (value > self.lo if self.lo_open else value >= self.lo))
                and (self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)))

    def __str__(self):
        if self.hi is None:
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        if self.lo is None:
            return f"{'<' if self.hi_open else '<='} {self.hi:g}"
        return f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"


@dataclasses.dataclass(frozen=True)
class OneOf:
    choices: tuple

    def allows(self, value):
        return value in self.choices

    def __str__(self):
        return "one of " + ", ".join(map(str, self.choices))


PositiveInt = typing.Annotated[int, Range(1)]  # batch sizes, step counts, intervals
NonNegativeInt = typing.Annotated[int, Range(0)]  # counts where 0 means none
PositiveFloat = typing.Annotated[float, Range(0, lo_open=True)]  # learning rates, temperatures
NonNegativeFloat = typing.Annotated[float, Range(0)]  # weights of loss terms, decay, clipping (0: off)
Fraction01 = typing.Annotated[float, Range(0, 1, hi_open=True)]  # dropout, AdamW betas
Device = typing.Annotated[str, OneOf(("auto", "cpu", "cuda", "mps"))]
DType = typing.Annotated[str, OneOf(("auto", "bfloat16", "float32"))]


class UserError(Exception):
    """Bad input from the user (a file, a flag): printed as one clear line, exit status 1."""


class Terminated(BaseException):
    """The process received SIGTERM (a job scheduler's stop, torchrun ending a failed run, `kill`).
    A BaseException, like KeyboardInterrupt, so that no library's `except Exception` swallows it."""


def raise_terminated(signum, frame):
    raise Terminated()


def raise_terminated_again(unraisable):
    """sys.unraisablehook: a SIGTERM whose Terminated was raised inside a finalizer (a __del__, a
    weakref callback), where Python can only print and drop it, is raised again from the main code
    a moment later (SIGALRM); any other unraisable error is reported as usual."""
    if isinstance(unraisable.exc_value, Terminated) and hasattr(signal, "setitimer"):
        signal.setitimer(signal.ITIMER_REAL, 0.01)
    else:
        sys.__unraisablehook__(unraisable)


def run_main(main):
    """Run a script's main(); a UserError becomes 'error: ...' on stderr and exit 1, not a traceback.
    SIGTERM stops it with one line and exit status 143 (128 + 15, what the shell reports): a
    checkpoint is only ever replaced whole, so a training run resumes from its last one."""
    signal.signal(signal.SIGTERM, raise_terminated)
    if hasattr(signal, "SIGALRM"):
        signal.signal(signal.SIGALRM, raise_terminated)
    sys.unraisablehook = raise_terminated_again
    try:
        main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except Terminated:
        print("stopped: the process received SIGTERM (a training run continues from its last checkpoint "
              "with --resume=true)", file=sys.stderr)
        sys.exit(143)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # output piped into a reader that stopped early (`--help | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush cannot fail again
        sys.exit(1)
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


# ----------------------------------------------------------------------------- config and CLI


def field_docs(cls):
    """The trailing '# comment' of each field in a dataclass's source: its help text. A comment
    may go on over the next lines, as comment-only lines whose text is aligned under the first
    line's comment (a comment at the field's own indentation is a section heading, not help)."""
    docs = {}
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return docs
    lines = source.splitlines()
    for node in ast.parse(source).body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            line = lines[node.lineno - 1]
            if "#" not in line[node.end_col_offset:]:
                continue
            comment_column = line.index("#", node.end_col_offset)
            parts = [line[comment_column + 1:].strip()]
            for following in lines[node.end_lineno:]:
                if not following.strip().startswith("#"):
                    break
                text = following[following.index("#") + 1:]
                if len(following) - len(text.lstrip()) < comment_column:  # not aligned: a heading
                    break
                parts.append(text.strip())
            docs[node.target.id] = " ".join(parts)
    return docs


def parse_value(text, type_, key):
    """A CLI string to the field's type: int, float (finite: inf and nan are refused, whatever the
    field's range), bool, str, a Path or Folder, or Optional of those."""
    if typing.get_origin(type_) is typing.Union:  # Optional[X]
        if text.lower() in ("none", "null", ""):
            return None
        type_ = next(t for t in typing.get_args(type_) if t is not type(None))
    if type_ in (Path, Folder):
        return checked_path(resolve_path(text), type_, key)
    if type_ is float:
        try:
            value = float(text)
        except ValueError:
            raise UserError(f"--{key}={text}: expected float") from None
        if not math.isfinite(value):
            raise UserError(f"--{key}={text}: expected a finite number")
        return value
    try:
        if type_ is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if type_ is int:
            return int(float(text)) if "e" in text.lower() and float(text).is_integer() else int(text)
        return type_(text)
    except ValueError:
        raise UserError(f"--{key}={text}: expected {getattr(type_, '__name__', type_)}") from None


def checked_path(path, type_, key):
    """A file option that names a folder, or a folder option that names a file, is a mistake now
    rather than a traceback later (a path that does not exist yet is left to the script)."""
    if type_ is Path and os.path.isdir(path):
        raise UserError(f"--{key}={path}: expected a file, but it is a folder")
    if type_ is Folder and os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"--{key}={path}: expected a folder, but it is a file")
    return path


def text_lines(path):
    """(line number, line) of a text file; a line that is not UTF-8 is a UserError naming it."""
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                yield n, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise UserError(f"{path}:{n}: not UTF-8 text (byte {raw[e.start]:#04x} at column {e.start + 1})") \
                    from None


def read_preset(path):
    """A preset file: lines 'key = value' (the same syntax as --key=value), '#' comments."""
    if not os.path.exists(path) and os.path.exists(repo_path(path)):
        path = repo_path(path)
    if not os.path.isfile(path):
        raise UserError(f"--config={path}: no such file")
    pairs = []
    for n, line in text_lines(path):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if "=" not in line:
            raise UserError(f"{path}:{n}: expected 'key = value', got {line!r}")
        key, value = (s.strip() for s in line.split("=", 1))
        pairs.append((key, value.strip("\"'"), f"{path}:{n}"))
    return pairs


def parse_config(cls, argv=None, description=None):
    """Build a config dataclass from --key=value arguments (and --config=PRESET files).

    Values are typed from the fields; later arguments win over earlier ones and
    over presets; --help lists every field with its default and doc comment."""
    argv = sys.argv[1:] if argv is None else argv
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)  # the plain types (Annotated stripped)
    checks = field_checks(cls)
    if any(a in ("-h", "--help") for a in argv):
        print(config_help(cls, description))
        sys.exit(0)
    pairs = []
    for arg in argv:
        if not arg.startswith("--") or "=" not in arg:
            raise UserError(f"unexpected argument {arg!r}: arguments look like --key=value (see --help)")
        key, value = arg[2:].split("=", 1)
        if key == "config":
            pairs += read_preset(value)
        else:
            pairs.append((key, value, arg))
    values, given = {}, {}
    for key, value, where in pairs:
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join('--' + c for c in close)}?" if close else "; see --help"
            raise UserError(f"{where}: unknown option --{key}{hint}")
        values[key] = parse_value(value, hints[key], key)
        given[key] = where if where.startswith("--") else f"{where}: {key} = {value}"
    for name, f in fields.items():  # defaults of Path and Folder fields are repository-relative too
        if name not in values and unwrap_optional(hints[name]) in (Path, Folder) and f.default is not None:
            values[name] = checked_path(resolve_path(f.default), unwrap_optional(hints[name]), name)
    config = cls(**values)
    for name, check in checks.items():
        value = getattr(config, name)
        if value is not None and not check.allows(value):
            raise UserError(f"{given.get(name, f'--{name}={value} (the default)')}: expected {check}")
    return config


def check_default_follows(cfg, primary, secondary, remedy):
    """A data option left at its default, the built-in world's file, while the option it goes with
    points at other data would quietly mix the world into a real run (its val loss, its NLL term):
    an error naming the option instead. remedy: the other way out, e.g. "--val_data=None"."""
    default = resolve_path(next(f.default for f in dataclasses.fields(cfg) if f.name == secondary))
    ours, theirs = getattr(cfg, secondary), getattr(cfg, primary)
    if ours == default and os.path.dirname(theirs) != os.path.dirname(default):
        raise UserError(f"--{secondary} is left at its default {os.path.relpath(default, ROOT)}, the built-in "
                        f"world's, but --{primary}={theirs} is other data: pass --{secondary} for the same data, or "
                        f"{remedy}")


def field_checks(cls):
    """{field name: Range or OneOf} for the fields whose type is Annotated with one."""
    checks = {}
    for name, type_ in typing.get_type_hints(cls, include_extras=True).items():
        type_ = unwrap_optional(type_)  # Optional[PositiveInt]: None passes, a number is checked
        if typing.get_origin(type_) is typing.Annotated:
            checks[name] = next(m for m in type_.__metadata__ if isinstance(m, (Range, OneOf)))
    return checks


def unwrap_optional(type_):
    if typing.get_origin(type_) is typing.Union:
        return next(t for t in typing.get_args(type_) if t is not type(None))
    return type_


def config_help(cls, description=None):
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    lines = [description.strip(), ""] if description else []
    lines.append("options (--key=value; --config=FILE loads a preset of 'key = value' lines; options typed "
                 "Path are relative to the repository root):")
    checks = field_checks(cls)
    for f in dataclasses.fields(cls):
        type_ = hints[f.name]
        if typing.get_origin(type_) is typing.Union:
            type_name = " or ".join("None" if t is type(None) else t.__name__ for t in typing.get_args(type_))
        else:
            type_name = type_.__name__
        if f.name in checks:
            type_name += f", {checks[f.name]}"
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        lines.append(f"  --{f.name}={default}  ({type_name})  {docs.get(f.name, '')}".rstrip())
    return "\n".join(lines)
