"""Enhanced simulated annealing as a keras-tuner Oracle (AutoCompress Algorithm 1).

One oracle searches one progressive round. The round's target compression
ratio (dense / kept, N x, on ``objective`` params or MACs) is about
``round_ratio`` times the previous round's, with a small seeded variance, and is
a hard constraint: every proposed action reaches it (analytically, see
``policy``). Proposals follow the guided heuristic — a layer with more weights
never gets a smaller prune fraction — and are normalised to the target by a
bounded bisection on a common scale of the fractions.

Trials are the initial action, then batches of ``iterations`` neighbours of the
current action per temperature (evaluated in parallel by distributed workers).
A finished batch is folded in trial order: each neighbour is accepted if it
scores higher, else with probability ``exp(-dE / (k T))`` (dE = accuracy loss);
then ``T <- cooling * T``. The search stops below ``stop_temperature`` or at
``max_trials``, whichever comes first.

A trial's values are the policy as plain scalars (``fraction/<layer>``,
``filter_share/<layer>``) plus ``sa/temperature``, ``sa/parent`` and
``sa/level``; the ``sa/`` entries are left out of the values hash. The whole
space is declared up front (``allow_new_entries=False``).

Progressive rounds: over a space with floors (``PolicySpace.from_model(...,
previous=policy)``) the oracle works in *increments*: per layer, the share ``g``
of the weights the floor left that this round removes, and the share ``t`` of
that extra reduction taken as filters (in log-kept terms, so filters and
columns each only grow past their floors). Layers are ordered by their
remaining weights, ``g`` never decreases with them, and re-normalisation only
scales ``g`` (never below 0, i.e. never below a floor). Without floors ``g`` and
``t`` are the action's fraction and filter share, as before.
"""
import math

import keras_tuner
import numpy as np
from keras_tuner.engine import trial as trial_module

from tfautocompress import cost, policy as policy_lib, space as space_lib
from tfautocompress.search import encoding
from tfautocompress.search.oracle import Draws, InfeasibleTargetError, SafeOracle, metropolis

__all__ = ["EnhancedSAOracle", "follows_size_order", "increment", "from_increment"]

_STATUS = trial_module.TrialStatus
_BISECTION_STEPS = 60
_PERTURB_ATTEMPTS = 8
_TOLERANCE = 1e-12


def follows_size_order(policy):
    """True iff no layer with more (remaining) weights has a smaller prune fraction.

    With floors, "weights" are those left after the previous round and the
    fraction is this round's increment over the floor (``increment``)."""
    space = policy.space
    remaining = space.remaining_weights()
    names = sorted(space.names, key=remaining.__getitem__)
    fractions = [increment(space, n, policy.action(n))[0] for n in names]
    return all(fractions[i] <= fractions[j] + _TOLERANCE
               for i in range(len(names)) for j in range(i + 1, len(names))
               if remaining[names[i]] < remaining[names[j]])


def _log_floors(space, name):
    first, second = space.floor(name)
    return -math.log1p(-first), -math.log1p(-second)


def increment(space, name, action):
    """``(g, t)`` of ``action`` over layer ``name``'s floor: ``g`` the share of the
    weights left by the floor that it removes, ``t`` the share of that extra
    reduction (in log-kept terms) taken as filters. No floor: ``(fraction,
    filter_share)``."""
    first, second = space.floor(name)
    if first == 0.0 and second == 0.0:
        return action.fraction, action.filter_share
    own_first, own_second = space.effective(name, action)
    if space.scheme_set != "filter+column":
        return max(0.0, 1.0 - (1.0 - own_first) / (1.0 - first)), 1.0
    floor_f, floor_c = _log_floors(space, name)
    extra_f = max(0.0, -math.log1p(-own_first) - floor_f)
    extra_c = max(0.0, -math.log1p(-own_second) - floor_c)
    extra = extra_f + extra_c
    return -math.expm1(-extra), (extra_f / extra if extra > 0 else 0.5)


def from_increment(space, name, g, t):
    """The ``LayerAction`` that removes ``g`` of what the floor left, share ``t`` as
    filters (inverse of ``increment``); its fractions never fall below the floor."""
    first, second = space.floor(name)
    if first == 0.0 and second == 0.0:
        return policy_lib.LayerAction(min(space.max_fraction, g), t)
    if space.scheme_set != "filter+column":
        fraction = 1.0 - (1.0 - first) * (1.0 - g)
        return policy_lib.LayerAction(min(space.max_fraction, max(first, fraction)), 1.0)
    floor_f, floor_c = _log_floors(space, name)
    extra = -math.log1p(-min(g, 1.0 - 1e-15))
    log_f, log_c = floor_f + t * extra, floor_c + (1.0 - t) * extra
    fraction = -math.expm1(-(log_f + log_c))
    share = min(1.0, max(0.0, log_f / (log_f + log_c)))
    return policy_lib.LayerAction(min(space.max_fraction, fraction), share)


class EnhancedSAOracle(SafeOracle):
    """Algorithm 1 over a ``PolicySpace``; the trial score is an accuracy to maximise.

    Args:
      space: ``space.PolicySpace`` of the model to prune.
      objective: ``"params"`` or ``"macs"``: what the compression ratio counts.
      target_compression_ratio: dense / kept (N x) of this round; if None,
        ``previous_compression_ratio * round_ratio * (1 + round_variance * u)``,
        ``u`` uniform in [-1, 1] from the seed.
      previous_compression_ratio: dense / kept after the previous round; None
        (default): the space's floors' ratio (the previous policy's analytic
        ratio; 1.0 for a space without floors).
      start_temperature, stop_temperature, cooling, boltzmann: SA schedule
        (cooling eta = 0.7 and k = 1e-3 as in the paper's §4).
      iterations: neighbours proposed (and evaluated in parallel) per temperature.
      perturb_share: share of layers a perturbation changes (at least one).
      step: perturbation magnitude at the start temperature; it shrinks with T.
      metric: name of the metric the tuner reports (maximised).
      max_trials: optional cap on the trial count (required if cooling == 1).
    """

    def __init__(self, space, objective="params", target_compression_ratio=None,
                 previous_compression_ratio=None, round_ratio=2.0, round_variance=0.05,
                 start_temperature=20.0, stop_temperature=0.5, cooling=0.7,
                 boltzmann=1e-3, iterations=4, perturb_share=0.3, step=0.5,
                 metric="val_accuracy", max_trials=None, seed=0, **kwargs):
        if not isinstance(space, space_lib.PolicySpace):
            raise TypeError(f"space must be a space.PolicySpace, got {type(space).__name__}.")
        self.space = space
        self.cost_objective = cost.check_objective(objective)
        self._check_schedule(start_temperature, stop_temperature, cooling, boltzmann,
                             iterations, max_trials)
        self.start_temperature, self.stop_temperature = float(start_temperature), float(stop_temperature)
        self.cooling, self.boltzmann = float(cooling), float(boltzmann)
        self.iterations = int(iterations)
        self.perturb_share, self.step = float(perturb_share), float(step)
        budget = 1 + self._levels() * self.iterations if cooling < 1 else max_trials
        super().__init__(objective=keras_tuner.Objective(metric, "max"),
                         max_trials=min(budget, max_trials or budget),
                         hyperparameters=self._space_hyperparameters(),
                         allow_new_entries=False, tune_new_entries=False,
                         seed=int(seed), **kwargs)
        self.seed = int(seed)  # the base class replaces a 0 seed by a random one
        self._draws = Draws(self.seed)
        self._remaining = space.remaining_weights()
        self._caps = self._increment_caps()
        if previous_compression_ratio is None:
            previous_compression_ratio = self._ratio({})
        self.previous_compression_ratio = float(previous_compression_ratio)
        if target_compression_ratio is None:
            u = self._draws.next().uniform(-1.0, 1.0)
            target_compression_ratio = (previous_compression_ratio * round_ratio
                                        * (1.0 + round_variance * u))
        self.target_compression_ratio = float(target_compression_ratio)
        self._check_feasible()
        self._temperature = self.start_temperature
        self._level = 0
        self._current = None   # {"trial_id", "score", "values"}
        self._best = None
        self._batch = {"level": -1, "proposals": [], "trial_ids": []}
        self._folded = []

    # ------------------------------------------------------------ checks ---
    @staticmethod
    def _check_schedule(start, stop, cooling, boltzmann, iterations, max_trials):
        if not 0 < stop <= start:
            raise ValueError(f"temperatures: need 0 < stop_temperature <= start_temperature, "
                             f"got stop={stop}, start={start}.")
        if not 0 < cooling <= 1:
            raise ValueError(f"cooling={cooling} must be in (0, 1].")
        if cooling == 1 and not max_trials:
            raise ValueError("cooling=1 never reaches the stop temperature: give max_trials.")
        if boltzmann <= 0:
            raise ValueError(f"boltzmann={boltzmann} must be > 0.")
        if int(iterations) < 1:
            raise ValueError(f"iterations={iterations} must be >= 1.")

    def _levels(self):
        """Temperatures T0 * cooling**i that are >= the stop temperature."""
        return int(math.floor(math.log(self.stop_temperature / self.start_temperature)
                              / math.log(self.cooling) + 1e-9)) + 1

    def _check_feasible(self):
        target = self.target_compression_ratio
        if not target >= 1.0:
            raise InfeasibleTargetError(
                f"target_compression_ratio={target} must be >= 1 (dense / kept).")
        best = max(self._ratio(self._at_caps(share)) for share in self._shares())
        if best < target:
            floors = "(above the floors, in size order) " if self.space.floors else ""
            raise InfeasibleTargetError(
                f"target compression ratio {target:.3f}x ({self.cost_objective}) is "
                f"infeasible: with every layer at max_fraction={self.space.max_fraction} "
                f"{floors}the space reaches at most {best:.3f}x. Raise max_fraction, add "
                "layers to the space or lower the target.")

    def _shares(self):
        return (0.0, 0.5, 1.0) if self.space.scheme_set == "filter+column" else (1.0,)

    def _increment_caps(self):
        """Largest increment per layer (space order) that keeps ``fraction <=
        max_fraction`` and the size order: no layer exceeds the cap of a layer
        with more remaining weights."""
        space = self.space
        own = {}
        for name in space.names:
            floor = space.floor_fraction(name)
            own[name] = (space.max_fraction if floor == 0.0
                         else max(0.0, 1.0 - (1.0 - space.max_fraction) / (1.0 - floor)))
        caps = {}
        for name in space.names:
            larger = [own[n] for n in space.names if self._remaining[n] > self._remaining[name]]
            caps[name] = min([own[name]] + larger)
        return [caps[n] for n in space.names]

    def _at_caps(self, share):
        return {n: from_increment(self.space, n, cap, share)
                for n, cap in zip(self.space.names, self._caps)}

    def _ratio(self, actions):
        return self.space.compression_ratio(actions, self.cost_objective)

    # ------------------------------------------------------- hyperparams ---
    def _space_hyperparameters(self):
        hp = keras_tuner.HyperParameters()
        for name in encoding.value_names(self.space):
            high = self.space.max_fraction if name.startswith("fraction/") else 1.0
            hp.Float(name, 0.0, high)
        hp.Fixed("sa/temperature", self.start_temperature)
        hp.Fixed("sa/parent", "")
        hp.Fixed("sa/level", 0)
        return hp

    def _compute_values_hash(self, values):
        return super()._compute_values_hash(
            {k: v for k, v in values.items() if not k.startswith("sa/")})

    # ----------------------------------------------------------- actions ---
    def _guided(self, raw, shares):
        """Sort ``raw`` increments onto the layers by remaining weights, scale them
        to the target."""
        names = self.space.names
        order = sorted(range(len(names)), key=lambda i: self._remaining[names[i]])
        sorted_raw = sorted(raw)
        ranked = [0.0] * len(raw)
        for rank, index in enumerate(order):
            ranked[index] = max(sorted_raw[rank], 1e-6)
        low, high = 0.0, max(self._caps) / min(ranked)
        actions = self._scaled(ranked, shares, high)
        if self._ratio(actions) < self.target_compression_ratio:
            return None
        for _ in range(_BISECTION_STEPS):
            middle = 0.5 * (low + high)
            if self._ratio(self._scaled(ranked, shares, middle)) >= self.target_compression_ratio:
                high = middle
            else:
                low = middle
        return policy_lib.PruningPolicy(self.space, self._scaled(ranked, shares, high))

    def _scaled(self, ranked, shares, scale):
        return {name: from_increment(self.space, name, min(cap, scale * r), s)
                for name, cap, r, s in zip(self.space.names, self._caps, ranked, shares)}

    def _initial_policy(self):
        rng = self._draws.next()
        n = len(self.space.layers)
        shares = (rng.uniform(0.0, 1.0, n) if self.space.scheme_set == "filter+column"
                  else np.ones(n))
        for _ in range(_PERTURB_ATTEMPTS):
            policy = self._guided(list(rng.uniform(0.1, 1.0, n)), [float(s) for s in shares])
            if policy is not None:
                return policy
            shares = np.ones(n)  # filter-only shares always reach the checked bound
        raise InfeasibleTargetError(f"no initial action reaches the target "
                                    f"{self.target_compression_ratio:.3f}x.")

    def _neighbour(self, values, temperature):
        """Perturb a random subset of layers, magnitude ``step * T / T0``."""
        current = encoding.from_values(self.space, values)
        names = self.space.names
        steps = [increment(self.space, n, current.actions[n]) for n in names]
        raw = [g for g, _ in steps]
        shares = [t for _, t in steps]
        sigma = self.step * temperature / self.start_temperature
        rng = self._draws.next()
        count = max(1, int(round(self.perturb_share * len(names))))
        for _ in range(_PERTURB_ATTEMPTS):
            new_raw, new_shares = list(raw), list(shares)
            for i in rng.choice(len(names), size=min(count, len(names)), replace=False):
                new_raw[i] = max(raw[i], 1e-3) * math.exp(sigma * rng.standard_normal())
                if self.space.scheme_set == "filter+column":
                    new_shares[i] = min(1.0, max(0.0, shares[i] + sigma * rng.standard_normal()))
            policy = self._guided(new_raw, new_shares)
            if policy is not None:
                return policy
        return current  # bounded: re-evaluate the current action

    # ------------------------------------------------------------ oracle ---
    def populate_space(self, trial_id):
        self._fold_if_ready()
        if not self._batch["proposals"]:
            if self._in_flight():
                return {"status": _STATUS.IDLE}
            if self._current is not None and self._level >= self._max_level():
                return {"status": _STATUS.STOPPED, "values": None}
            self._new_batch()
        values = self._batch["proposals"].pop(0)
        self._batch["trial_ids"].append(trial_id)
        return {"status": _STATUS.RUNNING, "values": values}

    def _max_level(self):
        return self._levels() if self.cooling < 1 else math.inf

    def _in_flight(self):
        ended = set(self.end_order)
        return any(t not in ended for t in self._batch["trial_ids"])

    def _new_batch(self):
        meta = {"sa/temperature": self._temperature, "sa/level": self._level}
        if self._current is None:
            initial = encoding.to_values(self._initial_policy())
            proposals = [dict(initial, **meta, **{"sa/parent": ""})]
        else:
            parent = self._current["trial_id"]
            proposals = [dict(encoding.to_values(self._neighbour(self._current["values"],
                                                                 self._temperature)),
                              **meta, **{"sa/parent": parent})
                         for _ in range(self.iterations)]
        self._batch = {"level": self._level, "proposals": proposals, "trial_ids": []}

    def _fold_if_ready(self):
        """Fold a finished batch into the SA state once (idempotent on replays)."""
        batch = self._batch
        if batch["proposals"] or not batch["trial_ids"] or self._in_flight():
            return
        if all(t in self._folded for t in batch["trial_ids"]):
            return
        initial = self._current is None
        for trial_id in sorted(batch["trial_ids"], key=self.start_order.index):
            trial = self.trials[trial_id]
            score = trial.score if trial.status == _STATUS.COMPLETED else None
            if self._current is None or self._accept(self._current["score"], score):
                self._current = {"trial_id": trial_id, "score": _clean(score),
                                 "values": _clean_values(trial.hyperparameters.values)}
            self._folded.append(trial_id)
        if not initial:
            self._level += 1
            self._temperature *= self.cooling

    def _accept(self, current_score, score):
        """Metropolis (dE = the accuracy loss) at the current temperature."""
        return metropolis(current_score, score, self._temperature, self.boltzmann, self._draws)

    def _note_best(self, trial):
        if trial.status != _STATUS.COMPLETED or trial.score is None:
            return
        key = (trial.score, -self.start_order.index(trial.trial_id))
        best = self._best
        if best is None or key > (best["score"], -self.start_order.index(best["trial_id"])):
            self._best = {"trial_id": trial.trial_id, "score": _clean(trial.score),
                          "values": _clean_values(trial.hyperparameters.values)}

    def learn(self, trial):
        self._note_best(trial)
        self._fold_if_ready()

    # ------------------------------------------------------------ result ---
    def best_policy(self):
        """The best-scoring ``PruningPolicy`` so far (ties: the earliest trial)."""
        if self._best is None:
            raise ValueError("no completed trial yet: run the search first.")
        return encoding.from_values(self.space, self._best["values"])

    def current_policy(self):
        if self._current is None:
            raise ValueError("no completed trial yet: run the search first.")
        return encoding.from_values(self.space, self._current["values"])

    @property
    def temperature(self):
        return self._temperature

    def get_state(self):
        state = super().get_state()
        state["sa"] = {
            "target_compression_ratio": self.target_compression_ratio,
            "temperature": self._temperature, "level": self._level,
            "seed": self.seed, "draws": self._draws.count,
            "current": self._current, "best": self._best,
            "batch": self._batch, "folded": list(self._folded),
        }
        return state

    def set_state(self, state):
        super().set_state(state)
        sa = state["sa"]
        self.target_compression_ratio = sa["target_compression_ratio"]
        self._temperature, self._level = sa["temperature"], sa["level"]
        self.seed, self._draws = sa["seed"], Draws(sa["seed"], sa["draws"])
        self._current, self._best = sa["current"], sa["best"]
        self._batch, self._folded = sa["batch"], list(sa["folded"])


def _clean(value):
    return None if value is None else float(value)


def _clean_values(values):
    """Trial values as JSON-clean Python scalars."""
    out = {}
    for key, value in values.items():
        if isinstance(value, (bool, str)):
            out[key] = value
        elif isinstance(value, (int, np.integer)):
            out[key] = int(value)
        else:
            out[key] = float(value)
    return out
