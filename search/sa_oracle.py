"""Enhanced simulated annealing as a keras-tuner Oracle (AutoCompress Algorithm 1).

One oracle searches one progressive round. The round's target compression
ratio (dense / kept, N x, on ``objective`` params, MACs or latency) is about
``round_ratio`` times the previous round's, with a small seeded variance, and is
a hard constraint: every proposed action reaches it (by ``space.PolicySpace``'s
exact budget of the projection). Proposals follow the guided heuristic — a layer with more weights
(for a latency target: more time) never gets a smaller prune fraction — and are
normalised to the target by a
bounded bisection on a common scale of the fractions (for a latency target, whose
costs come in tiles, each layer then gives back what the target does not need).

The chain. Trial 0 is the initial action; then, at each temperature of the
schedule, ``steps_per_temperature`` chain steps. By default (``parallel=1``) a
step is Algorithm 1's inner loop body: one neighbour of the *current accepted*
action is proposed, fast-evaluated, accepted if it scores at least as high,
else with probability ``exp(-dE / (k T))`` (dE = accuracy loss,
``search.oracle.metropolis``), and the next neighbour perturbs the possibly new
current action — a true Metropolis chain. With ``parallel=p > 1`` (p =
keras-tuner workers) a step is a batch of p neighbours of the same current
action, evaluated at once and folded in trial order (each neighbour is
accepted or rejected against the current action as updated by the earlier
ones). Workers asking for a trial while a step is in flight get IDLE. The
perturbation magnitude shrinks with T (``step * T / T0``).

The schedule always completes within the budget (``plan_schedule``). Let L be
the number of temperatures ``T0 * cooling**i >= stop_temperature`` (11 for the
paper's T0=20, stop=0.5, eta=0.7) and B = ``(max_trials - 1) // parallel`` the
chain steps the budget holds after the initial trial:

* B >= L: every temperature of the geometric schedule gets
  ``B // L`` steps (at most ``iterations`` if given); the trial count is
  ``1 + L * steps * parallel`` (<= max_trials; the remainder of B / L is left
  unused so every temperature gets the same number of steps).
* B < L: the temperatures are spread: B temperatures with one step each and a
  faster cooling factor ``(stop / T0) ** (1 / (B - 1))``, so the first is T0 and
  the last is exactly the stop temperature (B = 1: the stop temperature only).
* no ``max_trials``: the budget comes from the schedule, ``iterations``
  (default 4) steps at each of the L temperatures: ``1 + L * iterations *
  parallel`` trials (45 with the defaults).

So the last step always runs at the stop temperature or just above it (below
``stop / cooling``). ``parallel`` is capped at ``max_trials - 1``.
``cooling=1`` has L = 1 if T0 == stop (every step at that temperature);
otherwise it needs ``max_trials``, L is infinite and the temperatures are
spread from T0 to the stop temperature over the budget. The
schedule used is ``oracle.schedule`` (``Schedule``: temperatures, steps per
temperature, parallel, cooling factor used, trials); ``oracle.max_trials`` is
its trial count.

The decision. The paper's "action outcome" is the chain's final state
(``current_policy()``). ``best_policy()`` instead returns the best-scoring
action seen (ties: the earliest trial): the fast evaluation of every visited
action is already paid for, the search budget is a few dozen trials (far from
the convergence at which the final state and the best one coincide), and the
chain can end on a worse action it accepted at a higher temperature, or one
step away from a better one it left. The best-seen action is never worse on
the fast evaluation than the final state, and meets the same hard target and
size order.

A trial's values are the policy as plain scalars (``fraction/<layer>``,
``filter_share/<layer>``) plus ``sa/temperature``, ``sa/parent`` (trial id of
the current action it perturbs; "" for the initial one), ``sa/level`` (index of
the temperature), ``sa/step`` (chain step, 0 for the initial action) and
``sa/tag`` (the ``tag`` argument: which search this is, e.g. the pipeline's
``round_<k>``, so a keras-tuner worker can check that the oracle it reaches
serves the search it built its space for; the space's ``sa/tag`` is the same);
the ``sa/`` entries are left out of the values hash. The whole space is declared up
front (``allow_new_entries=False``). ``get_state`` is JSON-clean and holds the
RNG as seed + draw count (``search.oracle.Draws``), the current and best
actions, the chain step, the step in flight and the folded trial ids (folding is
idempotent, so replays after a resume do not fold twice).

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
from tfautocompress.search.oracle import (Draws, InfeasibleTargetError, SafeOracle,
                                          best_policy, metropolis, plan_schedule)

__all__ = ["EnhancedSAOracle", "GuidedHeuristic", "follows_size_order",
           "increment", "from_increment"]

_STATUS = trial_module.TrialStatus
_BISECTION_STEPS = 60
_PERTURB_ATTEMPTS = 8
_TOLERANCE = 1e-12


def follows_size_order(policy):
    """True iff no layer with more (remaining) weights has a smaller prune fraction.

    With floors, "weights" are those left after the previous round and the
    fraction is this round's increment over the floor (``increment``); with a
    latency model, a layer's time stands for its weights (``remaining_sizes``)."""
    space = policy.space
    remaining = space.remaining_sizes()
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


class GuidedHeuristic:
    """The guided heuristic of the enhanced SA (Algorithm 1): the layers with more
    remaining weights take the larger increments (``follows_size_order``), each
    under its cap, and the increments are scaled (bisection) until the policy just
    reaches the round's target."""

    def __init__(self, space, objective):
        self.space, self.objective = space, objective
        self.remaining = space.remaining_sizes()
        self.caps = self._increment_caps()

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
            larger = [own[n] for n in space.names if self.remaining[n] > self.remaining[name]]
            caps[name] = min([own[name]] + larger)
        return [caps[n] for n in space.names]

    def at_caps(self, share):
        """Every layer at its cap, ``share`` of it filter pruning."""
        return {n: from_increment(self.space, n, cap, share)
                for n, cap in zip(self.space.names, self.caps)}

    def ratio(self, actions):
        return self.space.compression_ratio(actions, self.objective)

    def policy(self, raw, shares, target):
        """Sort ``raw`` increments onto the layers by remaining weights, scale them
        to ``target`` (None when even the caps fall short)."""
        names = self.space.names
        order = sorted(range(len(names)), key=lambda i: self.remaining[names[i]])
        sorted_raw = sorted(raw)
        ranked = [0.0] * len(raw)
        for rank, index in enumerate(order):
            ranked[index] = max(sorted_raw[rank], 1e-6)
        low, high = 0.0, max(self.caps) / min(ranked)
        actions = self._scaled(ranked, shares, high)
        if self.ratio(actions) < target:
            return None
        for _ in range(_BISECTION_STEPS):
            middle = 0.5 * (low + high)
            if self.ratio(self._scaled(ranked, shares, middle)) >= target:
                high = middle
            else:
                low = middle
        actions = self._scaled(ranked, shares, high)
        if self.objective == "latency":
            actions = self._trimmed(actions, target)
        return policy_lib.PruningPolicy(self.space, actions)

    def _trimmed(self, actions, target):
        """Give back what the target does not need. A latency model's costs come in
        steps (a device computes filters in tiles), so the common scale can pass the
        target by a whole tile of one layer (5.44x for a 5x round of digits_vgg).
        Each layer in turn, the least time left first, takes the smallest increment
        that keeps the target, never below a layer with less time left (the size
        order). Params and MACs are continuous: their scaled policy is already on the
        target, and is left as it is."""
        space, actions, floor = self.space, dict(actions), 0.0
        for name in sorted(space.names, key=self.remaining.__getitem__):
            g, share = increment(space, name, actions[name])
            low, high = min(floor, g), g
            for _ in range(_BISECTION_STEPS):
                middle = 0.5 * (low + high)
                trial = {**actions, name: from_increment(space, name, middle, share)}
                if self.ratio(trial) >= target:
                    high = middle
                else:
                    low = middle
            actions[name] = from_increment(space, name, high, share)
            floor = max(floor, high)
        return actions

    def _scaled(self, ranked, shares, scale):
        return {name: from_increment(self.space, name, min(cap, scale * r), s)
                for name, cap, r, s in zip(self.space.names, self.caps, ranked, shares)}


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
      iterations: chain steps per temperature; None (default): as many as
        ``max_trials`` allows (``DEFAULT_ITERATIONS`` without it). With
        ``max_trials`` it is an upper bound (see ``plan_schedule``).
      parallel: neighbours of the current action per chain step, evaluated at
        once by that many keras-tuner workers; 1 (default): a Metropolis chain.
      perturb_share: share of layers a perturbation changes (at least one).
      step: perturbation magnitude at the start temperature; it shrinks with T.
      metric: name of the metric the tuner reports (maximised).
      max_trials: trial budget (required if cooling == 1); the cooling schedule
        is fitted into it (``schedule``).
      tag: a string naming this search, sent with every trial as ``sa/tag``.
    """

    def __init__(self, space, objective="params", target_compression_ratio=None,
                 previous_compression_ratio=None, round_ratio=2.0, round_variance=0.05,
                 start_temperature=20.0, stop_temperature=0.5, cooling=0.7,
                 boltzmann=1e-3, iterations=None, parallel=1, perturb_share=0.3, step=0.5,
                 metric="val_accuracy", max_trials=None, seed=0, tag="", **kwargs):
        if not isinstance(space, space_lib.PolicySpace):
            raise TypeError(f"space must be a space.PolicySpace, got {type(space).__name__}.")
        self.space = space
        self.cost_objective = cost.check_objective(objective)
        self._check_schedule(start_temperature, stop_temperature, cooling, boltzmann,
                             iterations, parallel, max_trials)
        self.start_temperature, self.stop_temperature = float(start_temperature), float(stop_temperature)
        self.cooling, self.boltzmann = float(cooling), float(boltzmann)
        self.schedule = plan_schedule(start_temperature, stop_temperature, cooling,
                                      max_trials, iterations, parallel)
        self.iterations = self.schedule.steps_per_temperature
        self.parallel = self.schedule.parallel
        self.perturb_share, self.step = float(perturb_share), float(step)
        self.tag = str(tag)
        super().__init__(objective=keras_tuner.Objective(metric, "max"),
                         max_trials=self.schedule.trials,
                         hyperparameters=self._space_hyperparameters(),
                         allow_new_entries=False, tune_new_entries=False,
                         seed=int(seed), **kwargs)
        self.seed = int(seed)  # the base class replaces a 0 seed by a random one
        self._draws = Draws(self.seed)
        self._heuristic = GuidedHeuristic(space, self.cost_objective)
        if previous_compression_ratio is None:
            previous_compression_ratio = self._heuristic.ratio({})
        self.previous_compression_ratio = float(previous_compression_ratio)
        if target_compression_ratio is None:
            u = self._draws.next().uniform(-1.0, 1.0)
            target_compression_ratio = (previous_compression_ratio * round_ratio
                                        * (1.0 + round_variance * u))
        self.target_compression_ratio = float(target_compression_ratio)
        self._check_feasible()
        self._step = 0         # chain steps folded after the initial trial
        self._current = None   # {"trial_id", "score", "values"}
        self._batch = {"step": -1, "proposals": [], "trial_ids": []}
        self._folded = []

    # ------------------------------------------------------------ checks ---
    @staticmethod
    def _check_schedule(start, stop, cooling, boltzmann, iterations, parallel, max_trials):
        if not 0 < stop <= start:
            raise ValueError(f"temperatures: need 0 < stop_temperature <= start_temperature, "
                             f"got stop={stop}, start={start}.")
        if not 0 < cooling <= 1:
            raise ValueError(f"cooling={cooling} must be in (0, 1].")
        if cooling == 1 and stop < start and not max_trials:
            raise ValueError("cooling=1 never reaches the stop temperature: give max_trials.")
        if boltzmann <= 0:
            raise ValueError(f"boltzmann={boltzmann} must be > 0.")
        if iterations is not None and int(iterations) < 1:
            raise ValueError(f"iterations={iterations} must be >= 1 (or None).")
        if int(parallel) < 1:
            raise ValueError(f"parallel={parallel} must be >= 1.")
        if max_trials is not None and int(max_trials) < 0:
            raise ValueError(f"max_trials={max_trials} must be >= 1 (or None).")

    def _check_feasible(self):
        target = self.target_compression_ratio
        if not target >= 1.0:
            raise InfeasibleTargetError(
                f"target_compression_ratio={target} must be >= 1 (dense / kept).")
        best = max(self._heuristic.ratio(self._heuristic.at_caps(share)) for share in self._shares())
        if best < target:
            floors = "(above the floors, in size order) " if self.space.floors else ""
            raise InfeasibleTargetError(
                f"target compression ratio {target:.3f}x ({self.cost_objective}) is "
                f"infeasible: with every layer at max_fraction={self.space.max_fraction} "
                f"{floors}the space reaches at most {best:.3f}x. Raise max_fraction, add "
                "layers to the space or lower the target.")

    def _shares(self):
        return (0.0, 0.5, 1.0) if self.space.scheme_set == "filter+column" else (1.0,)

    # ------------------------------------------------------- hyperparams ---
    def _space_hyperparameters(self):
        hp = keras_tuner.HyperParameters()
        for name in encoding.value_names(self.space):
            high = self.space.max_fraction if name.startswith("fraction/") else 1.0
            hp.Float(name, 0.0, high)
        hp.Fixed("sa/temperature", self.start_temperature)
        hp.Fixed("sa/parent", "")
        hp.Fixed("sa/level", 0)
        hp.Fixed("sa/step", 0)
        hp.Fixed("sa/tag", self.tag)
        return hp

    def _compute_values_hash(self, values):
        return super()._compute_values_hash(
            {k: v for k, v in values.items() if not k.startswith("sa/")})

    # ----------------------------------------------------------- actions ---
    def _guided(self, raw, shares):
        return self._heuristic.policy(raw, shares, self.target_compression_ratio)

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
            if self._current is not None and self._step >= self.schedule.steps:
                return {"status": _STATUS.STOPPED, "values": None}
            self._new_batch()
        values = self._batch["proposals"].pop(0)
        self._batch["trial_ids"].append(trial_id)
        return {"status": _STATUS.RUNNING, "values": values}

    def _in_flight(self):
        ended = set(self.end_order)
        return any(t not in ended for t in self._batch["trial_ids"])

    def _temperature_at(self, step):
        """Temperature of chain step ``step`` (0-based, after the initial trial)."""
        temperatures = self.schedule.temperatures
        if step < self.schedule.steps:
            return temperatures[step // self.schedule.steps_per_temperature]
        last = temperatures[-1] if temperatures else self.start_temperature
        return last * self.schedule.cooling

    def _level_at(self, step):
        return min(step, self.schedule.steps) // self.schedule.steps_per_temperature

    def _new_batch(self):
        if self._current is None:
            initial = encoding.to_values(self._initial_policy())
            meta = {"sa/temperature": self.start_temperature, "sa/level": 0, "sa/step": 0,
                    "sa/parent": "", "sa/tag": self.tag}
            proposals = [dict(initial, **meta)]
            step = -1
        else:
            step = self._step
            temperature = self._temperature_at(step)
            meta = {"sa/temperature": temperature, "sa/level": self._level_at(step),
                    "sa/step": step + 1, "sa/parent": self._current["trial_id"],
                    "sa/tag": self.tag}
            proposals = [dict(encoding.to_values(self._neighbour(self._current["values"],
                                                                 temperature)), **meta)
                         for _ in range(self.parallel)]
        self._batch = {"step": step, "proposals": proposals, "trial_ids": []}

    def _fold_if_ready(self):
        """Fold a finished step into the SA state once (idempotent on replays)."""
        batch = self._batch
        if batch["proposals"] or not batch["trial_ids"] or self._in_flight():
            return
        folded = set(self._folded)
        if all(t in folded for t in batch["trial_ids"]):
            return
        initial = batch["step"] < 0
        temperature = self._temperature_at(max(batch["step"], 0))
        for trial_id in sorted(batch["trial_ids"], key=self.start_order.index):
            trial = self.trials[trial_id]
            score = trial.score if trial.status == _STATUS.COMPLETED else None
            if self._current is None or self._accept(self._current["score"], score, temperature):
                self._current = {"trial_id": trial_id, "score": _clean(score),
                                 "values": _clean_values(trial.hyperparameters.values)}
            self._folded.append(trial_id)
        if not initial:
            self._step += 1

    def _accept(self, current_score, score, temperature):
        """Metropolis (dE = the accuracy loss) at the step's temperature."""
        return metropolis(current_score, score, temperature, self.boltzmann, self._draws)

    def learn(self, trial):
        self._fold_if_ready()

    # ------------------------------------------------------------ result ---
    def best_policy(self):
        """The best-scoring ``PruningPolicy`` seen (ties: the earliest trial).

        The round's decision: never worse on the fast evaluation than the
        chain's final state (``current_policy``), which is the paper's "action
        outcome"; see the module docstring for why best-seen is used."""
        return best_policy(self.space, self.trials.values())

    def current_policy(self):
        """The chain's current accepted action (its final state once the search ends)."""
        if self._current is None:
            raise ValueError("no completed trial yet: run the search first.")
        return encoding.from_values(self.space, self._current["values"])

    @property
    def temperature(self):
        """Temperature of the next chain step; once done, the last one times the
        schedule's cooling factor (below the stop temperature if cooling < 1)."""
        return self._temperature_at(self._step)

    @property
    def level(self):
        """Index of the next step's temperature (``len(schedule.temperatures)`` once done)."""
        return self._level_at(self._step)

    def get_state(self):
        state = super().get_state()
        state["sa"] = {
            "target_compression_ratio": self.target_compression_ratio,
            "schedule": self.schedule.as_dict(),
            "step": self._step, "temperature": self.temperature, "level": self.level,
            "seed": self.seed, "draws": self._draws.count,
            "current": self._current,
            "batch": self._batch, "folded": list(self._folded),
        }
        return state

    def set_state(self, state):
        super().set_state(state)
        sa = state["sa"]
        self.target_compression_ratio = sa["target_compression_ratio"]
        self._step = sa["step"]
        self.seed, self._draws = sa["seed"], Draws(sa["seed"], sa["draws"])
        self._current = sa["current"]
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
