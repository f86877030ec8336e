"""Typed, frozen run configuration: parsing of YAML files and key=value overrides, and validation that
names the key, the value and what is allowed."""
from __future__ import annotations

import dataclasses
import math
import os
import typing
from dataclasses import dataclass, fields

import yaml

from scaling import mixspec
from scaling.errors import UsageError
from scaling.safeyaml import YamlTooLarge, safe_load
from scaling.track import parse_wandb

SCHEDULES = ("cosine", "wsd")
MAX_ID_LENGTH = 128
MAX_SEED = 2**32 - 1
WANDB_PROJECT_FORBIDDEN = ("/", "\\", "#", "?", "%", ":")
DTYPES = ("auto", "float32", "bfloat16")
ATTENTION = ("auto", "xla", "cudnn", "blocks")  # model.ATTENTION_KERNELS and auto
REMAT = ("auto", "none", "dots", "full")  # model.REMAT_POLICIES and auto (train.limits.choose_remat)
PARAMETRIZATIONS = ("standard", "mup")  # family.PARAMETRIZATIONS (config imports nothing of the model)
MAX_STEPS_PER_CALL = 1024  # a call's batches are stacked in memory: (steps, batch, seq_len) tokens


@dataclass(frozen=True)
class Length:
    """A run's length as its config gives it: tokens (D), or a FLOP budget (C = 6ND) that D follows from."""

    value: float
    unit: typing.Literal["tokens", "flops"]

    @property
    def key(self) -> str:
        """The config key that holds it."""
        return "tokens" if self.unit == "tokens" else "flops_budget"

    def tokens(self, params: int) -> float:
        """D for a model of `params` parameters."""
        return self.value if self.unit == "tokens" else self.value / (6.0 * params)

    def __str__(self) -> str:
        return f"{self.key}={self.value:g}"


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one training run. `None` means "the recipe decides" (see family.py)."""

    # size: a target parameter count, or a width, or an explicit shape
    params: float | None = None
    d_model: int | None = None
    n_layers: int | None = None
    n_heads: int | None = None
    d_ff: int | None = None
    mlp: str = "swiglu"
    tied: bool = True
    qk_norm: bool = False
    seq_len: int = 256
    # length: exactly one of tokens (D) or flops_budget (C = 6ND, D derived)
    tokens: float | None = None
    flops_budget: float | None = None
    batch_size: int | None = None
    # optimizer and schedule
    lr: float | None = None
    # fitted laws (`scaling fit --law lr|batch --json`), FIT.json[,FIT2.json]: they set lr and batch_size
    # where the run leaves them open, in place of the family's rules (train/plan.py, scaling/rules.py)
    recipe: str | None = None
    recipe_sha256: str | None = None  # set by the planner: the files' content, so an edited one is a new config
    min_lr_ratio: float = 0.1
    warmup_fraction: float = 0.05
    schedule: str = "cosine"
    decay_fraction: float = 0.2  # wsd only: the final fraction of steps spent decaying
    warmup_tokens: float | None = None  # warmup fixed in tokens, not a fraction of the run (branches need it)
    # wsd only: cooldown branches of this run, D1,D2,... in the unit of its length (tokens, or FLOPs when
    # it has flops_budget); each continues this run's stable phase and decays to its own length
    cooldowns: str | None = None
    branch_of: str | None = None  # set by the trainer on a branch: the run whose checkpoint it starts from
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    dtype: str = "auto"  # auto: float32 on CPU, bfloat16 compute (float32 weights and loss) on accelerators
    attention: str = "auto"  # auto: cudnn on NVIDIA GPUs in bf16, xla elsewhere, the fastest on CPU (train.step)
    remat: str = "auto"  # what backward recomputes: auto = none on CPU, by memory on accelerators (train.limits)
    parametrization: str = "standard"  # mup: muP init, per-layer lr and output scale (family.Parametrization)
    base_width: int | None = None  # mup only: the width lr is tuned at; default the recipe's mup_base_width (64)
    output_mult: float | None = None  # mup only: the base model's readout multiplier; default the recipe's (4)
    # placement: where the run's arrays live (scale-out); none of these changes what the run computes
    mesh: str | None = None  # data:N | fsdp:N | data:A,fsdp:B; default: every device on the data axis
    devices: str | None = None  # local device indices, e.g. 0,1 (an agent's share of a node); default all
    microbatches: int = 1  # gradient accumulation: the batch in this many sequential parts
    steps_per_call: int | None = None  # optimizer steps per compiled call (lax.scan); default by size
    coordinator: str | None = None  # jax.distributed: host:port of process 0 (multi-host runs)
    num_processes: int | None = None
    process_id: int | None = None
    # data, evaluation, bookkeeping
    corpus: str = "stdlib"
    # corpus=mix: the prepared corpora it draws from (NAME:DIR,...) and their weights (NAME:W,...);
    # parsed and checked by scaling/mixspec.py
    mixture: str | None = None
    domains: str | None = None
    vocab_size: int | None = None
    seed: int = 0
    eval_tokens: int = 16384
    eval: str | None = None  # NAME:DIR,NAME:DIR evaluation sets besides the corpus's own (train/evalsets.py)
    n_evals: int = 8
    checkpoint_every: int = 0  # steps; 0 = only at the end (and on interruption)
    run_id: str | None = None
    name: str | None = None
    sweep: str | None = None
    # a ladder run: the sweep whose fitted law it checks (`sweep plan --validate` sets it); fit and report
    # keep it out of every fit and compare its loss with that sweep's prediction (scaling/laws/ladder_check.py)
    validates: str | None = None
    wandb: str = "auto"
    wandb_project: str = "scaling"

    def __post_init__(self):
        _check_choice("mlp", self.mlp, ("swiglu", "gelu"))
        _check_choice("schedule", self.schedule, SCHEDULES)
        parse_wandb(self.wandb)  # MODE[,nostats][,noconsole]; refused with one line otherwise
        _check_choice("dtype", self.dtype, DTYPES)
        _check_choice("attention", self.attention, ATTENTION)
        _check_choice("remat", self.remat, REMAT)
        _check_choice("parametrization", self.parametrization, PARAMETRIZATIONS)
        for key in ("params", "tokens", "flops_budget", "lr", "d_model", "n_layers", "n_heads", "d_ff",
                    "batch_size", "seq_len", "eval_tokens", "vocab_size", "warmup_tokens",
                    "base_width", "output_mult"):
            value = getattr(self, key)
            if value is not None and not value > 0:
                raise UsageError(f"{key}={_show(value)}: must be positive")
        for key in ("min_lr_ratio", "warmup_fraction", "decay_fraction", "beta1", "beta2"):
            if not 0 <= getattr(self, key) <= 1:
                raise UsageError(f"{key}={getattr(self, key)!r}: must be in [0, 1]")
        for key in ("weight_decay", "grad_clip", "checkpoint_every", "n_evals"):
            if getattr(self, key) < 0:
                raise UsageError(f"{key}={getattr(self, key)!r}: must be >= 0")
        if (self.tokens is None) == (self.flops_budget is None):
            raise UsageError("give exactly one of tokens=D or flops_budget=C (the run's length)")
        if self.params is None and self.d_model is None:
            raise UsageError("give the model size: params=N (a target count) or d_model=WIDTH")
        if self.params is not None and self.d_model is not None:
            raise UsageError("give params=N or d_model=WIDTH, not both")
        if self.cooldowns is not None:
            self._check_cooldowns()
        if self.recipe_sha256 is not None and self.recipe is None:
            raise UsageError("recipe_sha256 without recipe: it pins the content of the recipe's fit JSONs")
        mixspec.parse(self.corpus, self.mixture, self.domains)
        if self.microbatches < 1:
            raise UsageError(f"microbatches={self.microbatches}: must be at least 1")
        if self.steps_per_call is not None and not 1 <= self.steps_per_call <= MAX_STEPS_PER_CALL:
            raise UsageError(f"steps_per_call={self.steps_per_call}: allowed 1..{MAX_STEPS_PER_CALL}")
        if self.devices is not None and not all(p.strip().isdigit() for p in self.devices.split(",")):
            raise UsageError(f"devices={self.devices!r}: expected local device indices like 0,1")
        if (self.num_processes is None) != (self.process_id is None):
            raise UsageError("give num_processes and process_id together (with coordinator=HOST:PORT)")
        if self.num_processes is not None and not 0 <= self.process_id < self.num_processes:
            raise UsageError(f"process_id={self.process_id}: allowed 0..{self.num_processes - 1}")
        if self.run_id is not None and not _safe_id(self.run_id):
            raise UsageError(f"run_id={self.run_id!r}: use letters, digits, '-', '_' and '.' only, not '.' first "
                             "(the run home's own folders start with it)")
        if self.run_id is not None and (why := reserved_run_id(self.run_id)):
            raise UsageError(f"run_id={self.run_id}: {why}")
        if self.validates is not None and not (_safe_id(self.validates) and len(self.validates) <= MAX_ID_LENGTH):
            raise UsageError(f"validates={self.validates!r}: expected a sweep id (letters, digits, '-', '_', '.')")
        if self.run_id is not None and len(self.run_id) > MAX_ID_LENGTH:
            raise UsageError(f"run_id={self.run_id[:16]}... has {len(self.run_id)} characters; allowed: at most "
                             f"{MAX_ID_LENGTH} (it names the run's folder)")
        if not 0 <= self.seed <= MAX_SEED:  # the seed is a uint32 on the device and in numpy's generator
            raise UsageError(f"seed={self.seed}: allowed 0..{MAX_SEED}")
        if not self.wandb_project or len(self.wandb_project) > MAX_ID_LENGTH or any(
                c in self.wandb_project for c in WANDB_PROJECT_FORBIDDEN):
            raise UsageError(f"wandb_project={self.wandb_project!r}: allowed 1..{MAX_ID_LENGTH} characters "
                             f"without {' '.join(WANDB_PROJECT_FORBIDDEN)} (W&B refuses them)")

    @property
    def length(self) -> Length:
        """The run's length and its unit: `tokens` when given, else `flops_budget` (one of them is)."""
        if self.tokens is not None:
            return Length(self.tokens, "tokens")
        return Length(self.flops_budget, "flops")

    @property
    def cooldown_lengths(self) -> tuple[float, ...]:
        """The branch lengths of `cooldowns`, ascending (tokens, or FLOPs for a run given by flops_budget)."""
        if self.cooldowns is None:
            return ()
        return tuple(sorted({float(part) for part in self.cooldowns.split(",")}))

    def _check_cooldowns(self) -> None:
        if self.schedule != "wsd":
            raise UsageError(f"cooldowns={self.cooldowns}: branches need schedule=wsd (got {self.schedule}): "
                             "only a constant stable phase can be shared")
        try:
            lengths = self.cooldown_lengths
        except ValueError:
            raise UsageError(f"cooldowns={self.cooldowns!r}: expected lengths like 1e6,2e6 "
                             "(tokens, or FLOPs when the run has flops_budget)") from None
        if not all(math.isfinite(v) and v > 0 for v in lengths):
            raise UsageError(f"cooldowns={self.cooldowns}: lengths must be positive")
        if lengths[-1] > self.length.value:
            raise UsageError(f"cooldowns={self.cooldowns}: a branch longer than the run ({self.length}); "
                             "the run trains the stable phase for the longest branch")
        if self.branch_of is not None:
            raise UsageError("cooldowns and branch_of together: a branch has no branches of its own")

    @classmethod
    def from_dict(cls, values: dict) -> RunConfig:
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise UsageError(unknown_key_message(unknown[0]))
        hints = typing.get_type_hints(cls)
        values = _lr_from_fit(values)
        for key in ("cooldowns", "recipe"):  # YAML's [1e6, 2e6], [lr.json, batch.json]
            if isinstance(values.get(key), (list, tuple)):
                values = {**values, key: ",".join(str(v) for v in values[key])}
        values = {k: mixspec.flatten(v) if k in ("mixture", "domains") else v for k, v in values.items()}
        return cls(**{k: _coerce(k, v, hints[k]) for k, v in values.items()})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> RunConfig:
        return dataclasses.replace(self, **changes)


def config_defaults() -> dict:
    """Each RunConfig key's default: what a config recorded without the key (or a run that left it
    open) holds there."""
    return {f.name: f.default for f in dataclasses.fields(RunConfig)}


# The keys a person sets for a study (`scaling train --help` groups them the same way). The rest of
# RunConfig's fields place a run on devices or are set by the trainer, an agent or a multi-host launcher;
# listing them all after a typo buries the answer (a near miss of one is still suggested).
USER_KEYS = ("params", "d_model", "n_layers", "n_heads", "d_ff", "mlp", "tied", "qk_norm", "seq_len", "tokens",
             "flops_budget", "batch_size", "lr", "recipe", "schedule", "warmup_fraction", "warmup_tokens",
             "min_lr_ratio", "decay_fraction", "cooldowns", "weight_decay", "beta1", "beta2", "grad_clip",
             "parametrization", "base_width", "output_mult", "corpus", "mixture", "domains", "seed", "eval_tokens",
             "eval", "n_evals", "run_id", "name", "sweep", "validates",
             "checkpoint_every", "wandb", "wandb_project", "dtype")


def unknown_key_message(key: str) -> str:
    """One line for a key RunConfig does not have: the nearest keys by spelling (any field, internal ones
    included, since a near miss of one is still what was meant), else the keys a person sets."""
    import difflib

    names = [f.name for f in fields(RunConfig)]
    near = difflib.get_close_matches(key, names, n=3, cutoff=0.6) or [n for n in USER_KEYS if key in n][:3]
    if near:
        return f"unknown key {key!r}; did you mean {' or '.join(near)}?"
    return f"unknown key {key!r}; keys: {', '.join(USER_KEYS)} (scaling train --help)"


def _show(value) -> str:
    return f"{value:g}" if isinstance(value, float) else repr(value)


def _safe_id(text: str) -> bool:
    return bool(text) and all(c.isalnum() or c in "-_." for c in text) and not text.startswith(".")


# The names a run home keeps for itself beside its run folders (runs/index.py): the SQLite index and the
# files SQLite makes next to it. A run folder by one of these names takes the index's place and breaks
# the whole home. Compared without case: a case-insensitive file system makes Scaling.DB the same file.
HOME_INDEX = "scaling.db"
HOME_INDEX_FILES = (HOME_INDEX, f"{HOME_INDEX}-wal", f"{HOME_INDEX}-shm", f"{HOME_INDEX}-journal")


def reserved_run_id(run_id: str) -> str | None:
    """Why `run_id` cannot name a run folder in a home (it is the home's own), or None when it can."""
    if run_id.lower() in HOME_INDEX_FILES:
        return f"reserved: the run home keeps its index there ({', '.join(HOME_INDEX_FILES)})"
    if run_id.startswith("."):  # .sweeps, .seeding, .slurm and whatever the home adds next
        return "reserved: names starting with '.' are the run home's own folders (.sweeps, .seeding, .slurm)"
    return None


def _check_choice(key: str, value, allowed: tuple) -> None:
    if value not in allowed:
        raise UsageError(f"{key}={value!r}: allowed {', '.join(map(str, allowed))}")


def _lr_from_fit(values: dict) -> dict:
    """lr=fit:FIT.json: the peak lr that `scaling fit --law lr --json FIT.json` predicts at this run's
    params=N (lr_opt = c N^k), so one sweep spec gives every size its own fitted rate. (`recipe=FIT.json`
    does the same at the planned model's exact N, records the law, and sets the batch size too.)"""
    from scaling.rules import read_rules

    lr = values.get("lr")
    if not (isinstance(lr, str) and lr.strip().startswith("fit:")):
        return values
    path = lr.strip()[len("fit:"):]
    try:
        n = float(values.get("params"))
    except (TypeError, ValueError):
        raise UsageError(f"lr={lr}: needs params=N, the size the fitted rule is evaluated at "
                         f"(got params={values.get('params')!r})") from None
    rules = read_rules([path], "lr=fit:")
    if rules.lr_rule is None:
        raise UsageError(f"lr={lr}: {path} holds no learning-rate rule (write one with "
                         f"`scaling fit --law lr --json {path}`)")
    if not (math.isfinite(n) and n > 0):
        raise UsageError(f"lr={lr}: needs a positive params=N (got params={values.get('params')!r})")
    return {**values, "lr": rules.lr(n)}


def _coerce(key: str, value, hint):
    """Turn a YAML or command-line value into the field's type, or say which key and value are wrong."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if args else hint
    if isinstance(value, str) and not value.strip():  # `run_id=` is a slip, not a request for the default
        raise UsageError(f"{key}=: empty value; give one, or leave {key} out for its default")
    if isinstance(value, str) and base is str and type(None) not in typing.get_args(hint):
        return value  # a text key without a None default: `remat=none` names its value, and a bad one is named
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
        if type(None) in typing.get_args(hint):
            return None
        raise UsageError(f"{key}: a value is required")
    try:
        if base is bool:
            if isinstance(value, bool):
                return value
            text = str(value).lower()
            if text in ("true", "1", "yes", "on"):
                return True
            if text in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if base is int:
            number = float(value)
            if not number.is_integer():
                raise ValueError
            return int(number)
        if base is float:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if not math.isfinite(number):
                raise ValueError
            return number
        return str(value)
    except (TypeError, ValueError):
        kind = {bool: "true or false", int: "an integer", float: "a finite number"}.get(base, "text")
        raise UsageError(f"{key}={value!r}: expected {kind}") from None


def parse_overrides(items: list[str]) -> dict:
    """`key=value` strings -> dict of raw strings (typed later by RunConfig.from_dict)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
        if not sep or not key:
            raise UsageError(f"{item!r}: expected key=value")
        out[key] = value.strip()
    return out


def load_yaml(path: str) -> dict:
    try:
        with open(path) as fh:
            data = safe_load(fh)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"{path}: cannot read ({err})") from None
    except YamlTooLarge as err:
        raise UsageError(f"{path}: refused: {err}") from None
    except RecursionError:
        raise UsageError(f"{path}: refused: nested deeper than the YAML reader goes") from None
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        raise UsageError(f"{path}: not valid YAML{line}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping of key: value")
    return data


def sweep_overrides_from_env() -> dict:
    """The values `wandb agent` chose, from WANDB_SWEEP_PARAM_PATH ({key: {value: ...}}). They win over
    the command line, as wandb.init's own merge does; reading them here lets us validate them before
    anything is written and apply them even with wandb=off."""
    path = os.environ.get("WANDB_SWEEP_PARAM_PATH")
    if not path or not os.environ.get("WANDB_SWEEP_ID"):
        return {}
    data = load_yaml(path)
    out = {}
    for key, entry in data.items():
        if key.startswith("_") or key == "wandb_version":
            continue
        out[key] = entry["value"] if isinstance(entry, dict) and "value" in entry else entry
    return out


def resolve_config(config_file: str | None, overrides: list[str]) -> RunConfig:
    """Defaults < YAML file < key=value < the W&B sweep's chosen values."""
    values = load_yaml(config_file) if config_file else {}
    values.update(parse_overrides(overrides))
    values.update(sweep_overrides_from_env())
    run_id = os.environ.get("WANDB_RUN_ID") if os.environ.get("WANDB_SWEEP_ID") else None
    if run_id and "run_id" not in values:
        values["run_id"] = run_id
    return RunConfig.from_dict(values)
