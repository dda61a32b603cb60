"""AMC: AutoML for Model Compression (He et al., ECCV 2018) as a keras-tuner Oracle.

A DDPG agent walks the prunable layers in graph order. At layer ``t`` it sees the
11-feature embedding (paper Eq. 1) ``(t, n, c, h, w, stride, k, FLOPs[t],
reduced, rest, a_{t-1})`` scaled to [0, 1] and outputs ``a_t`` in (0, 1) (a
sigmoid). **``a_t`` is the layer's prune fraction**: the share of its filters
removed, the "sparsity ratio" of the paper's Algorithm 1
(``W_reduced += a_t * W_t``); the kept share is ``1 - a_t`` (AMC's code calls it
the preserve ratio). It is capped at ``a_max`` (0.8 in the paper) and, in the
resource-constrained protocol, raised to the smallest fraction for which the
target is still met if every later layer is pruned at ``a_max`` (Algorithm 1,
written for filter pruning: the bound is found on ``PolicySpace.remaining_cost``,
which also counts the consumers' dead input rows), so the episode meets the
target whatever the actor says.

Combined filter + column pruning (AutoCompress Table 2, "ADMM, DRL hyper.
determ."; AMC itself only prunes filters): over a ``filter+column`` space the
action is two-dimensional, ``(a_t, s_t)`` = the layer's total prune fraction and
its filter share (``policy.LayerAction``: kept filters ``(1 - a_t) ** s_t``, kept
columns ``(1 - a_t) ** (1 - s_t)``), both sigmoid outputs of the actor; the
critic takes both, and the state adds ``s_{t-1}`` as a 12th feature
(``COMBINED_FEATURES``). The Algorithm-1 bound (``bound_split_action``) assumes
the later layers at ``a_max`` with filters only (share 1, which also kills their
consumers' rows), raises ``a_t`` at the actor's share and, only if ``a_max`` at
that share falls short, raises the share; so the episode meets the target here too.

Exploration: ``TN(mu(s), sigma^2, 0, 1)`` (per action dimension), ``sigma = 0.5``
for ``warmup`` episodes, then ``0.5 * decay ** (episode - warmup)``. Every
transition of an episode is ``(s_t, a_t, R, s_{t+1})`` with the episode's reward
``R``; the critic's target is ``R - b + gamma * Q'(s', mu'(s'))`` (Eq. 3) with
``b`` an exponential moving average of past rewards and ``gamma = 1``. Rewards:
``-Error`` (resource-constrained, Eq. 4) or ``-Error * log(cost)``
(accuracy-guaranteed, Eqs. 5-6, cost = FLOPs (MACs) or #params). Actor and critic
have two hidden layers of 300 units; the action enters the critic's second
hidden layer; soft target updates with ``tau = 0.01``; replay buffer of 2000,
batches of 64. Updates (one per transition) start once the buffer holds a batch
(AMC's code waits for the warm-up to end; with the short budgets of a side-by-side
comparison that would leave nothing learned).

One episode = one trial: the oracle proposes the episode's policy (``PruningPolicy``
values, as ``EnhancedSAOracle`` encodes them, plus ``amc/episode``),
``PruningTuner`` scores it by validation accuracy after magnitude pruning, and
``end_trial`` turns the score into the reward and trains the agent. DDPG is
on-line, so the oracle answers IDLE while its episode is in flight (no parallel
workers).
"""
import dataclasses
import io
import math
import os

import keras_tuner
import numpy as np
import tensorflow as tf
from keras_tuner.engine import trial as trial_module

from tfautocompress import artifacts, cost, graph as graph_lib, layer_kinds, policy as policy_lib
from tfautocompress._keras import keras
from tfautocompress.search import encoding
from tfautocompress.search.oracle import Draws, InfeasibleTargetError, SafeOracle
from tfautocompress.search.uniform import smallest_meeting

__all__ = ["FEATURES", "COMBINED_FEATURES", "PROTOCOLS", "SCHEME_SETS", "LayerGeometry",
           "geometry_from_model", "LayerEmbedding", "bound_action", "bound_split_action",
           "DDPG", "AMCAgent", "AMCOracle"]

FEATURES = ("index", "n", "c", "h", "w", "stride", "k", "flops", "reduced", "rest",
            "previous_action")
COMBINED_FEATURES = FEATURES + ("previous_filter_share",)
SCHEME_SETS = ("filter", "filter+column")
PROTOCOLS = ("resource", "accuracy")
_STATUS = trial_module.TrialStatus
_TN_TRIES = 64
_AGENT_FILE = "amc_agent.npz"


# ------------------------------------------------------------ embedding ---
@dataclasses.dataclass(frozen=True)
class LayerGeometry:
    """Kernel ``n x c x k x k`` applied with ``stride`` on a ``c x h x w`` input."""

    n: int
    c: int
    h: int
    w: int
    stride: int
    k: int


def geometry_from_model(model, space):
    """``LayerGeometry`` of each layer of ``space`` (Conv2D, DepthwiseConv2D, Dense)."""
    result = []
    for name in space.names:
        layer = graph_lib.analyze(model).layers[name]
        shape = layer.input_shape
        kind = layer_kinds.prunable_layout(layer).kind
        if kind == "dense":
            result.append(LayerGeometry(int(layer.units), int(shape[-1]), 1, 1, 1, 1))
            continue
        c = int(shape[-1])
        n = (c * int(layer.depth_multiplier)
             if kind == "depthwise" else int(layer.filters))
        result.append(LayerGeometry(n, c, int(shape[1]), int(shape[2]),
                                    int(layer.strides[0]), int(layer.kernel_size[0])))
    return tuple(result)


def _min_max(column):
    low, high = float(np.min(column)), float(np.max(column))
    return np.zeros_like(column) if high <= low else (column - low) / (high - low)


class LayerEmbedding:
    """The 11 features of AMC Eq. (1), each in [0, 1] (12 over a filter+column space).

    Static columns (index, n, c, h, w, stride, k, FLOPs[t]) are min-max scaled over
    the layers (a constant column is 0); ``reduced`` (FLOPs removed so far, the
    earlier layers' actions, including their consumers' dead input rows) and
    ``rest`` (dense FLOPs of the later layers) are shares of the dense FLOPs;
    ``a_{t-1}`` is the previous action (0 at the first layer). FLOPs are MACs.
    Over a ``filter+column`` space ``s_{t-1}``, the previous filter share (0 at the
    first layer), follows (``COMBINED_FEATURES``).
    """

    def __init__(self, space, geometry):
        if len(geometry) != len(space.layers):
            raise ValueError(f"geometry has {len(geometry)} entries; the space has "
                             f"{len(space.layers)} layers ({', '.join(space.names)}).")
        self.space = space
        self.features = COMBINED_FEATURES if space.scheme_set == "filter+column" else FEATURES
        self.flops = np.array([s.params * s.positions for s in space.layers], np.float64)
        self.total = float(space.dense_cost("macs"))
        raw = np.array([[t, g.n, g.c, g.h, g.w, g.stride, g.k, f]
                        for t, (g, f) in enumerate(zip(geometry, self.flops))], np.float64)
        self.static = np.stack([_min_max(raw[:, i]) for i in range(raw.shape[1])], axis=1)

    def state(self, t, actions, previous_action=0.0, previous_share=0.0):
        """Features of layer ``t`` given ``{name: LayerAction}`` of the earlier layers
        (``previous_share`` is used over filter+column spaces only)."""
        earlier = {n: a for n, a in actions.items() if n in self.space.names[:t]}
        reduced = self.total - self.space.remaining_cost(earlier, "macs")
        rest = float(self.flops[t + 1:].sum())
        dynamic = [reduced / self.total, rest / self.total, float(previous_action)]
        if self.features is COMBINED_FEATURES:
            dynamic.append(float(previous_share))
        return np.concatenate([self.static[t], dynamic]).astype(np.float32)


# --------------------------------------------------- Algorithm 1 bound ---
def _meets(space, actions, t, target_cost, objective, a_max):
    """``meets(fraction, filter_share)``: does layer ``t`` at that action, with the
    later layers at ``a_max`` (filters only), reach ``target_cost``?"""
    name, later = space.names[t], space.names[t + 1:]
    tail = {n: policy_lib.LayerAction(a_max) for n in later}

    def meets(fraction, filter_share=1.0):
        trial = dict(actions, **tail,
                     **{name: policy_lib.LayerAction(fraction, filter_share)})
        return space.remaining_cost(trial, objective) <= target_cost

    return meets


def _infeasible(space, t, target_cost, objective, a_max):
    return InfeasibleTargetError(
        f"layer {space.names[t]!r}: the target cost {target_cost:.0f} ({objective}) is out "
        f"of reach even with a_max={a_max} here and in every later layer.")


def bound_action(space, actions, t, proposed, target_cost, objective, a_max):
    """AMC Algorithm 1: ``min(proposed, a_max)`` raised to the smallest fraction of
    layer ``t`` that still reaches ``target_cost`` when every later layer is
    pruned at ``a_max`` (``actions``: the earlier layers' ``LayerAction``s).

    Raises ``InfeasibleTargetError`` if even ``a_max`` here cannot reach it (the
    earlier layers were not bounded by this function)."""
    meets = _meets(space, actions, t, target_cost, objective, a_max)
    action = min(max(float(proposed), 0.0), a_max)
    bounded = smallest_meeting(meets, action, a_max)
    if bounded is None:
        raise _infeasible(space, t, target_cost, objective, a_max)
    return bounded


def bound_split_action(space, actions, t, proposed, proposed_share, target_cost, objective,
                       a_max):
    """Algorithm 1 over a ``filter+column`` space: ``(fraction, filter_share)`` of layer ``t``.

    The fraction is ``min(proposed, a_max)`` raised, at the proposed filter share,
    to the smallest that reaches ``target_cost`` with every later layer at
    ``a_max`` filters only (share 1); if ``a_max`` at that share falls short, the
    fraction is ``a_max`` and the share is raised to the smallest that reaches it
    (filters also remove the consumers' input rows, so a larger share removes more).
    Raises ``InfeasibleTargetError`` if even ``(a_max, 1)`` cannot reach it."""
    meets = _meets(space, actions, t, target_cost, objective, a_max)
    share = min(max(float(proposed_share), 0.0), 1.0)
    action = min(max(float(proposed), 0.0), a_max)
    bounded = smallest_meeting(lambda f: meets(f, share), action, a_max)
    if bounded is not None:
        return bounded, share
    raised = smallest_meeting(lambda s: meets(a_max, s), share, 1.0)
    if raised is None:
        raise _infeasible(space, t, target_cost, objective, a_max)
    return a_max, raised


# ----------------------------------------------------------------- DDPG ---
def _dense_params(rng, fan_in, fan_out, final=False):
    bound = 3e-3 if final else 1.0 / math.sqrt(fan_in)  # AMC / DDPG initialisation
    return (tf.Variable(rng.uniform(-bound, bound, (fan_in, fan_out)).astype(np.float32)),
            tf.Variable(np.zeros(fan_out, np.float32)))


class DDPG:
    """Deterministic policy gradient with target networks, in plain TF variables.

    Actions are vectors of ``action_dim`` entries in (0, 1) (sigmoid outputs)."""

    def __init__(self, state_dim=len(FEATURES), action_dim=1, hidden=300, lr_actor=1e-4,
                 lr_critic=1e-3, tau=0.01, gamma=1.0, buffer_size=2000, batch_size=64, seed=0):
        rng = np.random.default_rng(seed)
        self.tau, self.gamma, self.batch_size = float(tau), float(gamma), int(batch_size)
        self.buffer_size, self.action_dim = int(buffer_size), int(action_dim)
        if self.action_dim < 1:
            raise ValueError(f"DDPG: action_dim={action_dim} must be >= 1.")
        self.actor = [*_dense_params(rng, state_dim, hidden), *_dense_params(rng, hidden, hidden),
                      *_dense_params(rng, hidden, self.action_dim, final=True)]
        w_s, b_1 = _dense_params(rng, state_dim, hidden)
        w_2, b_2 = _dense_params(rng, hidden, hidden)
        w_a = _dense_params(rng, self.action_dim, hidden)[0]
        self.critic = [w_s, b_1, w_2, w_a, b_2, *_dense_params(rng, hidden, 1, final=True)]
        self.actor_target = [tf.Variable(v) for v in self.actor]
        self.critic_target = [tf.Variable(v) for v in self.critic]
        self._actor_opt = keras.optimizers.Adam(lr_actor)
        self._critic_opt = keras.optimizers.Adam(lr_critic)
        self.buffer = []  # [(s, a, r, s2, done)], oldest first
        self._train_step = tf.function(self._step)
        self._act = tf.function(lambda s: self._mu(self.actor, s))

    @staticmethod
    def _mu(params, s):
        w1, b1, w2, b2, w3, b3 = params
        h = tf.nn.relu(tf.nn.relu(s @ w1 + b1) @ w2 + b2)
        return tf.sigmoid(h @ w3 + b3)

    @staticmethod
    def _q(params, s, a):
        w_s, b1, w2, w_a, b2, w3, b3 = params
        h = tf.nn.relu(tf.nn.relu(s @ w_s + b1) @ w2 + a @ w_a + b2)
        return h @ w3 + b3

    def act(self, state):
        """mu(s) in (0, 1): a Python float (``action_dim`` 1) or a list of floats."""
        mu = self._act(tf.constant(np.asarray(state, np.float32)[None])).numpy()[0]
        return float(mu[0]) if self.action_dim == 1 else [float(v) for v in mu]

    def remember(self, state, action, reward, next_state, done):
        """Store a transition; ``action``: a float or ``action_dim`` floats."""
        action = np.asarray(action, np.float32).reshape(-1)
        if action.shape != (self.action_dim,):
            raise ValueError(f"DDPG.remember: action {action.tolist()} has {action.size} "
                             f"entries; this agent's actions have {self.action_dim}.")
        self.buffer.append((np.asarray(state, np.float32), action, float(reward),
                            np.asarray(next_state, np.float32), bool(done)))
        del self.buffer[:-self.buffer_size]

    def update(self, rng, baseline):
        """One critic + actor step on a random batch (if the buffer holds one)."""
        if len(self.buffer) < self.batch_size:
            return None
        batch = [self.buffer[i] for i in rng.choice(len(self.buffer), self.batch_size,
                                                    replace=False)]
        s, a, r, s2, done = (np.array([b[i] for b in batch], np.float32) for i in range(5))
        loss = self._train_step(s, a, r[:, None], s2, 1.0 - done[:, None],
                                tf.constant(baseline, tf.float32))
        return float(loss)

    def _step(self, s, a, r, s2, not_done, baseline):
        q_next = self._q(self.critic_target, s2, self._mu(self.actor_target, s2))
        y = tf.stop_gradient(r - baseline + self.gamma * not_done * q_next)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(y - self._q(self.critic, s, a)))
        self._critic_opt.apply_gradients(zip(tape.gradient(loss, self.critic), self.critic))
        with tf.GradientTape() as tape:
            policy_loss = -tf.reduce_mean(self._q(self.critic, s, self._mu(self.actor, s)))
        self._actor_opt.apply_gradients(zip(tape.gradient(policy_loss, self.actor), self.actor))
        for target, source in zip(self.actor_target + self.critic_target,
                                  self.actor + self.critic):
            target.assign((1.0 - self.tau) * target + self.tau * source)
        return loss

    def get_weights(self):
        return [v.numpy() for v in self.actor + self.critic + self.actor_target
                + self.critic_target]

    def set_weights(self, arrays):
        variables = self.actor + self.critic + self.actor_target + self.critic_target
        if len(arrays) != len(variables):
            raise ValueError(f"DDPG.set_weights: got {len(arrays)} arrays, expected "
                             f"{len(variables)}.")
        for variable, array in zip(variables, arrays):
            variable.assign(array)


# ---------------------------------------------------------------- agent ---
class AMCAgent:
    """Episodes over a ``PolicySpace``: rollout (with the Algorithm-1 bound), reward, learning.

    Args:
      space: a ``filter`` or ``filter+column`` ``PolicySpace``; ``geometry``: its
        ``LayerGeometry``s. Over ``filter+column`` each layer's action is the pair
        ``(fraction, filter_share)`` (see module doc); over ``filter`` it is the fraction.
      protocol: ``"resource"`` (R = -Error, actions bounded to reach the target) or
        ``"accuracy"`` (R = -Error * log(cost), no bound).
      objective: ``"macs"`` (FLOPs) or ``"params"``: what the target and log(cost) count.
      target_compression_ratio: dense / kept (N x) of ``objective`` (resource protocol).
      a_max: largest prune fraction of a layer (at most ``space.max_fraction``).
      warmup: episodes at constant noise ``sigma``; then ``sigma * noise_decay ** k``.
      baseline_alpha: weight of a new reward in the moving-average baseline.
    """

    def __init__(self, space, geometry, protocol="resource", objective="macs",
                 target_compression_ratio=2.0, a_max=0.8, warmup=100, sigma=0.5,
                 noise_decay=0.95, baseline_alpha=0.5, seed=0, **ddpg_kwargs):
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol={protocol!r}; accepted: {PROTOCOLS}.")
        if space.scheme_set not in SCHEME_SETS:
            raise ValueError(f"AMC prunes structures (filters, or filters and columns): the "
                             f"space's scheme_set is {space.scheme_set!r}; accepted: "
                             f"{', '.join(repr(s) for s in SCHEME_SETS)}.")
        if not 0.0 < a_max <= space.max_fraction:
            raise ValueError(f"a_max={a_max} must be in (0, max_fraction="
                             f"{space.max_fraction}].")
        self.space, self.protocol = space, protocol
        self.split = space.scheme_set == "filter+column"
        self.objective = cost.check_objective(objective)
        self.embedding = LayerEmbedding(space, geometry)
        self.a_max, self.warmup, self.sigma = float(a_max), int(warmup), float(sigma)
        self.noise_decay, self.baseline_alpha = float(noise_decay), float(baseline_alpha)
        self.target_compression_ratio = float(target_compression_ratio)
        self.target_cost = space.dense_cost(objective) / self.target_compression_ratio
        if protocol == "resource":
            full = {n: policy_lib.LayerAction(self.a_max) for n in space.names}
            if space.remaining_cost(full, objective) > self.target_cost:
                raise InfeasibleTargetError(
                    f"target compression ratio {self.target_compression_ratio:.3f}x "
                    f"({objective}) is infeasible with a_max={a_max} in every layer "
                    f"(reaches {space.compression_ratio(full, objective):.3f}x).")
        self.seed, self.draws, self.episode, self.baseline = int(seed), Draws(seed), 0, None
        self.ddpg = DDPG(state_dim=len(self.embedding.features),
                         action_dim=2 if self.split else 1, seed=self.seed, **ddpg_kwargs)

    def rng(self):
        """A generator for the next draw (resumes never replay)."""
        return self.draws.next()

    def noise(self):
        return self.sigma * self.noise_decay ** max(0, self.episode - self.warmup)

    def _explore(self, mu, sigma, rng):
        """A draw of TN(mu, sigma^2, 0, 1) (bounded rejection, then clipped)."""
        for _ in range(_TN_TRIES):
            a = rng.normal(mu, sigma)
            if 0.0 <= a <= 1.0:
                return float(a)
        return float(min(max(mu, 0.0), 1.0))

    def rollout(self, explore=True):
        """One episode: ``(states, actions)``, each per layer in ``space.names`` order;
        an action is the prune fraction (filter space) or ``[fraction, filter_share]``."""
        rng, sigma = self.rng(), self.noise()
        actions, states, chosen, previous, previous_share = {}, [], [], 0.0, 0.0
        for t, name in enumerate(self.space.names):
            state = self.embedding.state(t, actions, previous, previous_share)
            mu = self.ddpg.act(state)
            a, share = (mu[0], mu[1]) if self.split else (mu, 1.0)
            if explore:
                a = self._explore(a, sigma, rng)
                if self.split:
                    share = self._explore(share, sigma, rng)
            a = min(a, self.a_max)
            if self.protocol == "resource" and self.split:
                a, share = bound_split_action(self.space, actions, t, a, share,
                                              self.target_cost, self.objective, self.a_max)
            elif self.protocol == "resource":
                a = bound_action(self.space, actions, t, a, self.target_cost,
                                 self.objective, self.a_max)
            actions[name] = policy_lib.LayerAction(a, share)
            states.append(state)
            chosen.append([float(a), float(share)] if self.split else float(a))
            previous, previous_share = a, share
        return states, chosen

    def _layer_action(self, action):
        if self.split:
            fraction, share = action
            return policy_lib.LayerAction(float(fraction), float(share))
        return policy_lib.LayerAction(float(action))

    def policy(self, actions):
        """The ``PruningPolicy`` of an episode's per-layer ``actions`` (``rollout``'s)."""
        if len(actions) != len(self.space.names):
            raise ValueError(f"got {len(actions)} actions; the space has "
                             f"{len(self.space.names)} layers ({', '.join(self.space.names)}).")
        return policy_lib.PruningPolicy(self.space, {
            n: self._layer_action(a) for n, a in zip(self.space.names, actions)})

    def reward(self, accuracy, actions):
        error = 1.0 - float(accuracy)
        if self.protocol == "resource":
            return -error
        cost = self.policy(actions).remaining_cost(self.objective)
        return -error * math.log(max(cost, 1.0))

    def learn(self, states, actions, reward):
        """Store the episode's transitions (all with reward R) and train on them."""
        reward = float(reward)
        self.baseline = reward if self.baseline is None else (
            self.baseline + self.baseline_alpha * (reward - self.baseline))
        last = len(states) - 1
        for t, (state, a) in enumerate(zip(states, actions)):
            self.ddpg.remember(state, a, reward, states[min(t + 1, last)], t == last)
        rng = self.rng()
        for _ in states:
            self.ddpg.update(rng, self.baseline)
        self.episode += 1

    def get_state(self):
        return {"seed": self.seed, "draws": self.draws.count, "episode": self.episode,
                "baseline": self.baseline,
                "buffer": [[s.tolist(), a.tolist(), r, s2.tolist(), d] for s, a, r, s2, d in
                           self.ddpg.buffer]}

    def set_state(self, state):
        self.seed, self.draws = int(state["seed"]), Draws(state["seed"], state["draws"])
        self.episode, self.baseline = int(state["episode"]), state["baseline"]
        self.ddpg.buffer = [(np.asarray(s, np.float32), np.asarray(a, np.float32).reshape(-1),
                             float(r), np.asarray(s2, np.float32), bool(d))
                            for s, a, r, s2, d in state["buffer"]]


# --------------------------------------------------------------- oracle ---
class AMCOracle(SafeOracle):
    """One AMC episode per trial on ``PruningTuner`` (score = validation accuracy).

    Args: ``space``, ``geometry`` (``geometry_from_model(model, space)``),
    ``max_trials`` (episodes), ``metric`` (the tuner's score name) and the
    ``AMCAgent`` arguments (a ``filter+column`` space gives two-dimensional actions,
    see module doc). The agent's networks are saved next to
    ``oracle.json`` (``amc_agent.npz``); the optimizers' moments are not.
    ``best_policy()`` is the episode of highest reward (for the accuracy-guaranteed
    protocol this is not the highest accuracy).
    """

    def __init__(self, space, geometry, max_trials=400, metric="val_accuracy", seed=0,
                 **agent_kwargs):
        self.agent = AMCAgent(space, geometry, seed=seed, **agent_kwargs)
        self.space = space
        hp = keras_tuner.HyperParameters()
        for name in encoding.value_names(space):
            hp.Float(name, 0.0, space.max_fraction if name.startswith("fraction/") else 1.0)
        hp.Fixed("amc/episode", 0)
        super().__init__(objective=keras_tuner.Objective(metric, "max"),
                         max_trials=int(max_trials), hyperparameters=hp,
                         allow_new_entries=False, tune_new_entries=False, seed=int(seed))
        self.seed = int(seed)
        self._pending = None  # {"trial_id", "states", "actions"}
        self._best = None     # {"trial_id", "reward", "score", "actions"}

    def _compute_values_hash(self, values):
        return super()._compute_values_hash(
            {k: v for k, v in values.items() if not k.startswith("amc/")})

    def populate_space(self, trial_id):
        if self._pending is not None:
            return {"status": _STATUS.IDLE}
        states, actions = self.agent.rollout()
        self._pending = {"trial_id": trial_id, "states": [s.tolist() for s in states],
                         "actions": actions}
        values = encoding.to_values(self.agent.policy(actions))
        values["amc/episode"] = self.agent.episode
        return {"status": _STATUS.RUNNING, "values": values}

    def learn(self, trial):
        self._finish_episode(trial)

    def _finish_episode(self, trial):
        pending = self._pending
        if pending is None or pending["trial_id"] != trial.trial_id:
            return
        if trial.status == _STATUS.COMPLETED and trial.score is not None:
            actions = pending["actions"]
            reward = self.agent.reward(trial.score, actions)
            states = [np.asarray(s, np.float32) for s in pending["states"]]
            self.agent.learn(states, actions, reward)
            if self._best is None or reward > self._best["reward"]:
                self._best = {"trial_id": trial.trial_id, "reward": float(reward),
                              "score": float(trial.score), "actions": actions}
        elif trial.status == _STATUS.RUNNING:
            return  # sent back for retry: the same values come back
        self._pending = None

    def best_policy(self):
        if self._best is None:
            raise ValueError("no completed episode yet: run the search first.")
        return self.agent.policy(self._best["actions"])

    @property
    def best_reward(self):
        return None if self._best is None else self._best["reward"]

    # ------------------------------------------------------------ state ---
    def get_state(self):
        state = super().get_state()
        state["amc"] = {"agent": self.agent.get_state(), "pending": self._pending,
                        "best": self._best, "seed": self.seed}
        return state

    def set_state(self, state):
        super().set_state(state)
        amc = state["amc"]
        self.agent.set_state(amc["agent"])
        self._pending, self._best, self.seed = (_actions_key(amc["pending"]),
                                                _actions_key(amc["best"]), amc["seed"])

    def _agent_path(self):
        return os.path.join(self._project_dir, _AGENT_FILE)

    def save(self):
        super().save()
        buffer = io.BytesIO()
        np.savez(buffer, *self.agent.ddpg.get_weights())
        artifacts.write_bytes(self._agent_path(), buffer.getvalue())

    def reload(self):
        super().reload()
        if os.path.exists(self._agent_path()):
            with np.load(self._agent_path()) as data:
                self.agent.ddpg.set_weights([data[f"arr_{i}"] for i in range(len(data.files))])


def _actions_key(record):
    """A pending/best record of an older state file (``"fractions"``) in today's form."""
    if record is not None and "actions" not in record and "fractions" in record:
        record = {("actions" if k == "fractions" else k): v for k, v in record.items()}
    return record
