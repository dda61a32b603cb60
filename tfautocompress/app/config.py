"""``Config``: the settings of one AutoCompress run, and the console flags made from them.

Each setting a console script exposes carries its flag (name, help, bounds) in its
field's metadata; ``define_flags`` defines those flags from the fields, with the
field's default, and ``Config.from_flags`` builds the ``Config`` back, so a
default is written once. This module loads no TensorFlow: the flags are defined
(and ``--help`` answers) before it starts. The choice lists below are the
library's (``cost.OBJECTIVES``, ``space.SCHEME_SETS``, ``compact.COLUMNS``,
``distribute.DISTRIBUTIONS``; tests/test_cli.py checks that they agree).
"""
import dataclasses
import math

from absl import flags

__all__ = ["Config", "define_flags", "round_seed", "round_step", "step_seed", "OBJECTIVES",
           "SCHEME_SETS", "COLUMNS", "DISTRIBUTIONS", "SEARCH_SCORES", "LATENCY_DEVICES"]

OBJECTIVES = ("params", "macs", "latency")
SCHEME_SETS = ("filter", "filter+column", "irregular")
COLUMNS = ("keep", "lower", "auto", "rows", "slices")
DISTRIBUTIONS = ("none", "mirrored", "multi_worker")
SEARCH_SCORES = ("accuracy", "probability")  # search.tuner.SCORES
LATENCY_DEVICES = ("host", "adb", "adb_gpu")
# settings a run may resume under another value of (they do not change its result)
RUNTIME = ("distribution", "validation_freq")


def round_seed(seed, k):
    """The seed of round ``k``'s search (Config.seed = ``seed``)."""
    return seed + k


def round_step(previous, target, round_ratio):
    """``(aim, exact)``: the ratio (dense / kept) the round after ``previous`` x aims at.

    Without a ``target``, ``previous * round_ratio``, to which the search adds the
    paper's small variance (``exact`` False). Toward a ``target`` (a milestone or the
    final one), the rounds left, counted in steps of ``round_ratio`` (5 % over it
    still counts as one), split what is left evenly and exactly, so that the rounds
    land on the target with no drift and the last is never a small step: 5x from
    2.1x is 3.24x then 5x, not 4.2x then a 1.2x step that a latency target's tiles
    may only take as a jump (one tile of digits_vgg's first conv halves the second's
    input: 4.3x to 6.3x); 30x from 1x by 2.154 with a milestone at 10x is 2.154x,
    4.64x, 10x, 17.3x, 30x."""
    if target is None:
        return previous * round_ratio, False
    left = math.ceil(math.log(target / previous) / math.log(round_ratio * 1.05) - 1e-9)
    if left <= 1:
        return float(target), True
    return previous * (target / previous) ** (1.0 / left), True


def step_seed(seed, step):
    """The global seed set before step ``step`` trains (round k is step k;
    purification is step 100)."""
    return seed * 1000 + step


def _setting(default, help_text=None, flag=None, choices=None, **bounds):
    """A ``Config`` field; with ``help_text`` also a console flag (``flag`` or the
    field's name; ``choices``: an enum flag; ``bounds``: absl's lower/upper_bound)."""
    metadata = {} if help_text is None else dict(help=help_text, flag=flag, choices=choices,
                                                 bounds=bounds)
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=type(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass
class Config:
    """Settings of one AutoCompress run (saved in ``state.json``).

    ``max_accuracy_drop``: percentage points of validation accuracy the result may
    lose against the baseline (1.0 = one point). ``target_compression_ratio``:
    dense / kept (N x) on ``objective``; None = as far as the bound allows.
    ``milestones``: lower ratios the rounds land on exactly on the way (``round_step``).
    ``admm``: keyword arguments of ``callbacks.admm.ADMM`` (rho, rho_factor, ...).
    ``bn_momentum``: BatchNormalization momentum while pruning (None keeps the
    model's): after a hard prune the moving statistics must follow the pruned
    weights within the few epochs of a round (0.99 would lag ~100 steps).
    ``distribution``: ``"none"``, ``"mirrored"`` or ``"multi_worker"``, the
    ``tf.distribute`` strategy of the training phases (``distribute``; the
    batch size of ``splits.train`` is the global batch, ``lr`` its rate). It does
    not change the result beyond float round-off, so a run may resume under
    another one. ``search_parallel``: SA neighbours evaluated per chain step; set
    it to the number of keras-tuner search workers (the same value gives the same
    trials in one process).
    ``columns``: ``compact``'s column mode for the final model (``compact.COLUMNS``;
    ``"auto"``: only the layers whose lowered form runs faster in host TFLite than
    their dense conv at half their filters and columns prune columns, and they run
    lowered, so the search counts what TFLite executes; ``objective="latency"``
    compacts with ``"keep"``, the form its latency model times).
    ``validation_freq``: the training phases' per-epoch validation
    (``evaluate.fit_validation``: every this many epochs, 0: none); the rounds and
    bounds use the validation accuracy measured after each phase either way.
    """

    objective: str = _setting(
        "params", "What the compression ratio counts: CONV params or MACs, or latency (dense / "
        "compact latency in TFLite, predicted from single-layer timings on this host).",
        choices=OBJECTIVES)
    latency_device: str = _setting(
        "host", "Where --objective=latency times the layers: this host (LiteRT), or the "
        "Android device on adb (benchmark_model on its CPU, or adb_gpu: its GPU delegate).",
        choices=LATENCY_DEVICES)
    latency_threads: int = _setting(
        1, "CPU threads of the timings behind --objective=latency.", lower_bound=1)
    benchmark_binary: str = _setting(
        "", "TFLite's benchmark_model for the phone (--latency_device=adb or adb_gpu).")
    latency_table: str = _setting(
        "", "A latency model to use instead of timing the layers: the latency_model.json "
        "an earlier run (on this host or a phone) wrote for the same model.")
    target_compression_ratio: float = _setting(
        None, "Stop Phase I at this compression ratio (dense / kept, N x); default: as far "
        "as the accuracy bound allows.", flag="target_ratio")
    milestones: list = _setting(
        [], "Compression ratios Phase I's rounds land on exactly on the way (each one's "
        "model kept in its round folder), e.g. 10 with --target_ratio 30.")
    max_accuracy_drop: float = _setting(
        1.0, "Allowed validation-accuracy loss in percentage points vs. the baseline.",
        lower_bound=0.0, upper_bound=100.0)
    # 6 rounds to max_fraction 0.98 took the default digits run to 76 / 77 / 87x at
    # +0.28 / -0.28 / +0.28 test points (seeds 0-2); 5 rounds at 0.95 gave 37-39x.
    max_rounds: int = _setting(6, "Maximum Phase I rounds.", flag="rounds", lower_bound=1)
    round_ratio: float = _setting(2.0, "Each round's target / the previous round's.")
    scheme_set: str = _setting(
        None, "Structured pruning schemes; default: filter+column, and filter for "
        "--objective=latency (a kept conv multiplies its pruned columns: they save no time).",
        flag="schemes", choices=SCHEME_SETS)
    max_fraction: float = _setting(
        0.98, "The most of a layer's filters (or columns) the rounds may prune in all: "
        "the space's reach (higher ratios need more).", lower_bound=0.0, upper_bound=0.999)
    search_trials: int = _setting(24, "Fast-evaluation trials per round.", lower_bound=1)
    search_subset: int = _setting(None)
    # The true class's mean probability against top-1 (the paper's), the default digits
    # run, seeds 0-2: 74.3 / 68.4 / 74.6x at -0.83 / +0.28 / 0.00 test points against
    # 67.4 / 70.0 / 74.4x at -1.11 / -0.28 / -0.28; table.py's Fashion-MNIST seed 0:
    # 88.73 / 88.02 % at 9.4 / 32.2x against 88.45 / 87.99 % at 9.5 / 33.5x.
    search_score: str = _setting(
        "probability", "The fast evaluation's score of a policy: the mean probability of "
        "the true class (smooth where top-1 saturates), or top-1 accuracy (the paper's).",
        choices=SEARCH_SCORES)
    admm_epochs: int = _setting(4, "ADMM epochs per round.", lower_bound=1)
    retrain_epochs: int = _setting(4, "Masked-retraining epochs per round.", lower_bound=0)
    # The recovery (table.py's Fashion-MNIST setting, seed 0, 2 + 2 epochs a round, dense
    # 88.87 % test; test at 9.5x / 33x CONV params): the paper's lr 1e-3 gave 87.76 /
    # 86.28 %, with distillation 0.5 88.30 / 87.40 %, and with distillation at lr 2e-3
    # 88.40 / 87.86 %, at 3e-3 88.39 / 88.38 % (at 3e-4: 85.35 / 84.45 %): a round's few
    # steps need large ones to move W towards Z and to win the hard prune back. On the
    # default digits run (seeds 0-2) distillation at 3e-3 gave 72.0 / 71.6 / 72.2x at
    # -1.39 / 0.00 / +0.28 test points, the paper's recipe 73.9 / 69.0 / 70.8x at -0.56 /
    # +0.56 / -0.56 (a few of 360 test images either way).
    lr: float = _setting(3e-3, "Adam learning rate of the pruning phases (ADMM, masked "
                         "retraining, the fine-tune), cosine-decayed to 0 over each phase.",
                         lower_bound=0.0)
    admm: dict = _setting({})
    # The landing (table.py's Fashion-MNIST setting, 3 seeds, 2 + 2 epochs a round,
    # distillation at lr 3e-3): the hard prune cuts <= 5.5e-5 of a layer's norm (up to
    # 0.141 without it), 88.18 / 87.72 % test at 9.9x / 32.1x CONV params against 88.19 /
    # 87.98 % without it; at lr 1e-3 it cost 0.5 / 0.9 points (seed 0). On the default
    # digits run (seeds 0-2): 67.4 / 70.0 / 74.4x at -1.11 / -0.28 / -0.28 test points,
    # cut <= 1.1e-4 (without it: 72.0 / 71.6 / 72.2x at -1.39 / 0.00 / +0.28, cut <= 0.46).
    # The proximal W-step from the first step (ADMM prox_step) converges too, but freezes
    # the support early (86.70 / 85.44 %; results/ablation_fashion_seed0.md).
    admm_landing: float = _setting(
        0.25, "Share of each round's last ADMM epoch in which ADMM converges onto the "
        "pruning's constraint set (proximal W-step, Z/U four times), so that the hard "
        "prune removes almost nothing (0: off).", lower_bound=0.0, upper_bound=1.0)
    distill_weight: float = _setting(
        0.5, "Knowledge distillation from the dense model in ADMM, masked retraining and "
        "the fine-tune: the soft term's share of the loss (0: off).",
        lower_bound=0.0, upper_bound=1.0)
    distill_temperature: float = _setting(4.0, "Temperature of the distillation's soft "
                                          "targets.", lower_bound=1e-3)
    bn_momentum: float = _setting(0.9)
    purification_trials: int = _setting(12, "Trials of the threshold search.", lower_bound=0)
    purification_rounds: int = _setting(3)
    purification_max_scale: float = _setting(1.0)
    export_tflite: bool = _setting(True, "Export, benchmark and GPU-check the result.")
    columns: str = _setting(
        "auto", "Column-sparse convolutions of the compact model: keep the zero columns, "
        "lower them all (ColumnSparseConv2D; or in one form), or auto: prune columns only "
        "in the layers whose lowered form runs faster in host TFLite (timed at half their "
        "filters and columns), and run those lowered.", choices=COLUMNS)
    seed: int = _setting(0, "Seed of data split, search and training.")
    distribution: str = _setting(
        "none", "tf.distribute strategy of the training phases: one device, "
        "MirroredStrategy over the local GPUs (or CPUs), or MultiWorkerMirroredStrategy "
        "from TF_CONFIG. --batch_size is the global batch and --lr its learning rate.",
        choices=DISTRIBUTIONS)
    search_parallel: int = _setting(
        1, "SA neighbours evaluated per chain step: the number of keras-tuner search "
        "workers (the same value in one process gives the same trials).", lower_bound=1)
    validation_freq: int = _setting(
        1, "Evaluate the validation set during training after every this many epochs "
        "(val_* in the epoch logs); 0: only once training ends, which is all the results "
        "use. On a small --train_size the per-epoch pass can cost as much as training.",
        lower_bound=0)

    def __post_init__(self):
        if self.scheme_set is None:
            self.scheme_set = "filter" if self.objective == "latency" else "filter+column"
        try:
            self.milestones = sorted(float(m) for m in self.milestones)
        except (TypeError, ValueError):
            raise ValueError(f"Config.milestones={self.milestones!r}: give compression "
                             "ratios (numbers > 1), e.g. [10].") from None
        for name, accepted in (("objective", OBJECTIVES), ("scheme_set", SCHEME_SETS),
                               ("search_score", SEARCH_SCORES),
                               ("latency_device", LATENCY_DEVICES),
                               ("columns", COLUMNS), ("distribution", DISTRIBUTIONS)):
            if getattr(self, name) not in accepted:
                raise ValueError(f"Config.{name}={getattr(self, name)!r}; accepted: "
                                 f"{', '.join(map(repr, accepted))}.")
        if self.objective == "latency" and self.scheme_set == "irregular":
            raise ValueError("Config.objective='latency' with scheme_set='irregular': scattered "
                             "zeros run as fast as dense weights; use scheme_set 'filter' or "
                             "'filter+column'.")
        if self.latency_device != "host" and not self.benchmark_binary:
            raise ValueError(f"Config.latency_device={self.latency_device!r} needs "
                             "benchmark_binary: the path of TFLite's benchmark_model for "
                             "the phone (tflite_tools.android).")
        checks = {"max_rounds": self.max_rounds >= 1, "latency_threads": self.latency_threads >= 1,
                  "search_trials": self.search_trials >= 1,
                  "search_parallel": self.search_parallel >= 1,
                  "validation_freq": self.validation_freq >= 0,
                  "admm_epochs": self.admm_epochs >= 1, "retrain_epochs": self.retrain_epochs >= 0,
                  "purification_trials": self.purification_trials >= 0,
                  "purification_rounds": self.purification_rounds >= 1,
                  "max_accuracy_drop": 0 <= self.max_accuracy_drop <= 100,
                  "round_ratio": self.round_ratio > 1, "lr": self.lr > 0,
                  "distill_weight": 0 <= self.distill_weight <= 1,
                  "admm_landing": 0 <= self.admm_landing <= 1,
                  "distill_temperature": self.distill_temperature > 0,
                  "bn_momentum": self.bn_momentum is None or 0 <= self.bn_momentum < 1,
                  "target_compression_ratio": self.target_compression_ratio is None
                  or self.target_compression_ratio > 1,
                  "milestones": all(1 < m < (self.target_compression_ratio or math.inf)
                                    for m in self.milestones)}
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"Config.{name}={getattr(self, name)!r} is out of range: "
                                 "rounds, trials, search_parallel and ADMM epochs >= 1, "
                                 "retrain epochs and validation_freq >= 0, "
                                 "max_accuracy_drop in [0, 100] percentage points, "
                                 "round_ratio and target_compression_ratio > 1, "
                                 "milestones > 1 and below the target, lr > 0, "
                                 "distill_weight and admm_landing in [0, 1], "
                                 "bn_momentum in [0, 1) or None.")

    @classmethod
    def from_flags(cls, values, **settings):
        """A ``Config`` from parsed flags (``define_flags``); ``settings`` add or
        override fields without a flag."""
        return cls(**{f.name: values[_flag_name(f)].value for f in _flagged()}, **settings)

    def resumable_settings(self):
        """This configuration as saved, without the settings a resume may change."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in RUNTIME}


def _flagged():
    return [f for f in dataclasses.fields(Config) if f.metadata]


def _flag_name(field):
    return field.metadata["flag"] or field.name


def define_flags(names=None, flag_values=flags.FLAGS):
    """Define the console flags of ``Config``'s settings (``names``: only those
    fields), with the settings' defaults, bounds and choices."""
    for field in _flagged():
        if names is not None and field.name not in names:
            continue
        meta, name = field.metadata, _flag_name(field)
        if meta["choices"]:
            flags.DEFINE_enum(name, field.default, list(meta["choices"]), meta["help"],
                              flag_values=flag_values)
            continue
        define = {bool: flags.DEFINE_boolean, int: flags.DEFINE_integer,
                  float: flags.DEFINE_float, str: flags.DEFINE_string,
                  list: flags.DEFINE_list}[field.type]
        default = (field.default if field.default is not dataclasses.MISSING
                   else field.default_factory())
        define(name, default, meta["help"], flag_values=flag_values, **meta["bounds"])
