"""The horizons are defined once, in lob.contract; everything else reads or checks them."""
import json

import lobclient

from lob.contract import CLASSES, HORIZONS
from lob.models.registry import config_from_preset
from lob.training.labels import tick_targets
from lob.training.config import TrainConfig


def test_client_and_model_use_the_contract_horizons():
    # the client must not import lob (no torch on its side): its copy is checked here
    assert lobclient.HORIZONS == HORIZONS
    assert config_from_preset("mamba", "tiny", vocab_size=10, n_features=2).horizons == HORIZONS
    assert "horizons" not in TrainConfig.__dataclass_fields__  # one definition, not a training option
    assert len(CLASSES) == 3


def test_labels_and_manifest_use_the_contract_horizons(tmp_path):
    from lob.data.schema import load_dataset
    from lob.data.simulator import simulate_dataset
    from lob.training.train import train

    simulate_dataset(tmp_path / "d", n_symbols=1, n_days=1, seed=0, events_per_day=1500, start_date="2024-01-02")
    t = next(iter(load_dataset(tmp_path / "d").values()))
    labels, _ = tick_targets(t, 0.5)
    assert labels.shape == (len(t), len(HORIZONS))
    run = train(tmp_path / "d", tmp_path / "r", TrainConfig(max_steps=1, window=64, batch_size=2, eval_every=1,
                                                            max_val_windows=2))
    assert json.loads((run / "manifest.json").read_text())["horizons"] == list(HORIZONS)
