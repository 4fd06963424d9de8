"""Small model settings shared by test modules (a module of its own, so that importing them pulls
in nothing else: the GPU machine that runs the CUDA tests has no polars)."""

#: a forecaster that fits the ETTh1 test slices in seconds
TINY_FORECASTER = dict(
    horizon=12,
    lookback=48,
    patch_len=8,
    stride=4,
    d_model=16,
    head_size=8,
    n_layers=1,
    max_epochs=2,
    batch_size=64,
    verbose=False,
    random_state=0,
)

#: a sequence classifier or regressor that fits a few dozen short instances in a second
TINY_SEQUENCE = dict(
    patch_len=4,
    stride=2,
    d_model=8,
    n_layers=1,
    head_size=4,
    shift_distances=(1,),
    tcn_dilations=(),
    max_epochs=2,
    batch_size=8,
    random_state=0,
    accelerator="cpu",
)
