"""What the deep base offers a new method, each on a toy encoder written here: unsupervised fits, the rows'
indices in every batch, several optimisers, a step between epochs, train-only head layers, augmentation."""

import h5py
import numpy as np
import pytest
import torch

from skhash.encoders._deep import DeepHashEncoder, TrainOnly


class Toy(DeepHashEncoder):
    """The smallest deep encoder: a Linear head, pulled towards the signs of the first features."""

    _requires_y = False

    def __init__(self, n_bits=4, device="cpu", *, batch_size=16, max_epochs=3, learning_rate=1e-2,
                 weight_decay=0.0, random_state=0, verbose=0):
        self.n_bits = n_bits
        self.device = device
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.random_state = random_state
        self.verbose = verbose

    def _build_latent(self, n_features):
        return torch.nn.Linear(n_features, self.n_bits)

    def _loss(self, v, y, loss_module, state):
        assert y is None
        return ((torch.tanh(v) - torch.sign(v).detach()) ** 2).mean()


def data(n=96, d=6, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def test_unsupervised_fit_needs_no_labels_and_ignores_them():
    X = data()
    a = Toy().fit(X)
    b = Toy().fit(X, np.arange(len(X)) % 3)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    assert not hasattr(a, "classes_") and a.transform(X).shape == (96, 4)
    assert a.n_steps_ == 3 * (96 // 16)


def test_unsupervised_fit_streams_from_hdf5(tmp_path):
    X = data(n=200)
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["X"] = X
    with h5py.File(tmp_path / "x.h5", "r") as f:
        streamed = Toy().fit(f["X"])
    assert streamed.n_features_in_ == 6 and streamed.transform(X).shape == (200, 4)


class IndexChecker(Toy):
    """Checks, inside the loss, that every batch's index names the rows its features came from."""

    def _batch_loss(self, batch, latent, loss_module, state):
        np.testing.assert_array_equal(batch.x.numpy(), state["X"][batch.index.numpy()])
        state["seen"].append(batch.index.numpy().copy())
        return self._loss(latent(batch.x), batch.y, loss_module, state)

    def _loss_state(self, device):
        return {**super()._loss_state(device), "X": self.X_check, "seen": self.seen}


@pytest.mark.parametrize("streamed", [False, True])
def test_every_batch_carries_its_rows_indices(tmp_path, streamed):
    X = data(n=100)
    enc = IndexChecker(batch_size=16, max_epochs=2)
    enc.X_check, enc.seen = X, []
    if streamed:
        with h5py.File(tmp_path / "x.h5", "w") as f:
            f["X"] = X
        with h5py.File(tmp_path / "x.h5", "r") as f:
            enc.fit(f["X"])
    else:
        enc.fit(X)
    epochs = [np.concatenate(enc.seen[:6]), np.concatenate(enc.seen[6:])]
    for rows in epochs:  # full batches of distinct rows each epoch
        assert len(rows) == 96 and len(np.unique(rows)) == 96


class TwoPlayers(Toy):
    """A head and a critic, each with its own optimiser and loss; the critic's loss reads the head's output."""

    def _build_loss_module(self, n_classes):
        return torch.nn.Linear(self.n_bits, 1)

    def _param_groups(self, latent, loss_module):
        return [list(latent.parameters()), list(loss_module.parameters())]

    def _batch_loss(self, batch, latent, critic, state):
        v = latent(batch.x)
        head_loss = 0.0 * v.sum()  # no gradient for the head from its own loss
        critic_loss = ((critic(v) - 1.0) ** 2).mean()  # depends on the head, must not move it
        return head_loss, critic_loss


def test_each_optimiser_steps_on_its_own_loss_only():
    X = data()
    fitted = TwoPlayers(max_epochs=2).fit(X)
    # The head must end exactly at its initial state (zero gradient, no decay): rebuild that state
    # from fit's seed (random_state=0 draws it first).
    rng = np.random.RandomState(0)
    seed = int(rng.randint(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    start = fitted._build_latent(6)
    fitted._init_parameters(start, fitted._build_loss_module(0), gen)
    np.testing.assert_array_equal(fitted.latent_weight_, start.weight.detach().numpy())
    assert fitted.loss_curve_ == [0.0, 0.0]


def test_a_critic_that_moves_the_head_would_be_caught():
    class Leaky(TwoPlayers):
        def _param_groups(self, latent, loss_module):  # one optimiser for both: the critic's loss leaks
            return [list(latent.parameters()) + list(loss_module.parameters())]

        def _batch_loss(self, batch, latent, critic, state):
            return sum(super()._batch_loss(batch, latent, critic, state))

    X = data()
    leaky, clean = Leaky(max_epochs=2).fit(X), TwoPlayers(max_epochs=2).fit(X)
    assert not np.array_equal(leaky.latent_weight_, clean.latent_weight_)


class Alternating(Toy):
    """Records, between epochs, the epoch number and the head's output on every training row."""

    def _epoch_end(self, context):
        out = context.latent_outputs()
        w = context.latent.weight.detach().numpy()
        b = context.latent.bias.detach().numpy()
        np.testing.assert_allclose(out.numpy(), self.X_check @ w.T + b, rtol=1e-5, atol=1e-6)
        assert context.latent.training  # given back in training mode
        self.epochs.append(context.epoch)


def test_epoch_end_sees_every_training_row_between_epochs():
    X = data()
    enc = Alternating(max_epochs=4)
    enc.X_check, enc.epochs = X, []
    enc.fit(X)
    assert enc.epochs == [0, 1, 2, 3]


class Flip(TrainOnly):
    def forward(self, x):
        return -x


class TrainOnlyHead(Toy):
    def _build_latent(self, n_features):
        return torch.nn.Sequential(torch.nn.Linear(n_features, self.n_bits, bias=False), Flip())


def test_train_only_layers_are_identity_at_inference_and_the_head_still_folds():
    X = data()
    enc = TrainOnlyHead().fit(X)
    np.testing.assert_allclose(enc.coef_, enc.latent_weight_.T)
    np.testing.assert_allclose(enc.intercept_, 0.0)
    flip = Flip()
    x = torch.ones(2, 3)
    assert torch.equal(flip.train()(x), -x) and torch.equal(flip.eval()(x), x)


def test_a_head_that_does_not_fold_says_what_to_override():
    class Deep(Toy):
        def _build_latent(self, n_features):
            return torch.nn.Sequential(torch.nn.Linear(n_features, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))

    with pytest.raises(TypeError, match="_decision_block"):
        Deep().fit(data())


class Augmented(Toy):
    def _augment(self, x, state):
        self.calls.append(x.shape)
        return x + 100.0  # so large that the codes must differ from an unaugmented fit


def test_the_augmentation_hook_sees_every_batch():
    X = data()
    enc = Augmented(max_epochs=2)
    enc.calls = []
    enc.fit(X)
    assert enc.calls == [(16, 6)] * (2 * 6)
    assert not np.array_equal(enc.coef_, Toy(max_epochs=2).fit(X).coef_)


class Threads(Toy):
    """Records how many torch threads every training step ran on."""

    def __init__(self, n_jobs=None, max_epochs=1):
        super().__init__(max_epochs=max_epochs)
        self.n_jobs = n_jobs

    def _loss(self, v, y, loss_module, state):
        self.seen.add(torch.get_num_threads())
        return super()._loss(v, y, loss_module, state)


@pytest.mark.parametrize("n_jobs, expected", [(None, 1), (1, 1), (2, 2), (-1, "cores")])
def test_training_threads_follow_n_jobs_and_are_restored(n_jobs, expected):
    from skhash._validation import available_cores

    before = torch.get_num_threads()
    enc = Threads(n_jobs=n_jobs)
    enc.seen = set()
    enc.fit(data())
    assert enc.seen == {available_cores() if expected == "cores" else expected}
    assert torch.get_num_threads() == before


def test_the_default_gives_large_steps_a_second_thread_only():
    from skhash._validation import PARALLEL_MIN_FLOPS, available_cores, threads_for

    assert threads_for(None, PARALLEL_MIN_FLOPS / 2) == 1
    assert threads_for(None, PARALLEL_MIN_FLOPS * 10) == min(2, available_cores())
    assert threads_for(-2, 1.0) == max(1, available_cores() - 1)
    assert threads_for(3, 1.0) == 3


def test_n_jobs_zero_is_refused():
    from skhash import InputError, OrthoHashEncoder

    with pytest.raises(InputError, match="n_jobs"):
        OrthoHashEncoder(8, device="cpu", n_jobs=0).fit(data(), np.arange(96) % 3)


@pytest.mark.parametrize("preset, first, expected", [
    (None, "skhash", "PASSIVE"),  # OpenMP threads sleep instead of spinning (fast on a busy machine)
    ("ACTIVE", "skhash", "ACTIVE"),  # the user's own setting is kept
    (None, "torch", None),  # too late once torch loaded OpenMP: left alone rather than set for nothing
])
def test_importing_skhash_makes_openmp_threads_wait_passively(preset, first, expected):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset:
        env["OMP_WAIT_POLICY"] = preset
    other = "torch" if first == "skhash" else "skhash"
    code = f"import os, {first}, {other}; print(os.environ.get('OMP_WAIT_POLICY'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == str(expected)
