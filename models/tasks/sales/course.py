"""The platform's sales features as DataFrames, for training a fastai ``tabular_learner`` that the platform can serve.

    from models.tasks.sales.course import course_frames
    train, valid, cat_names, cont_names = course_frames("data")
    to = TabularPandas(pd.concat([train, valid]), [Categorify, FillMissing, Normalize], cat_names, cont_names,
                       y_names="Sales", splits=(range(len(train)), range(len(train), len(train) + len(valid))))

The rows are :class:`models.tasks.sales.features.Preprocessor`'s own features (what
``/sales`` computes from a request), ``Sales`` is the log of the day's sales (the
service answers ``exp`` of the model's output), and the missing-value flags are left
to fastai's ``FillMissing``. ``zoo import fastai --task sales`` maps the Learner's
categories, fill values, means and standard deviations back onto the service's
preprocessing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from models.task import Spec
from models.tasks.sales.features import CAT_NAMES, CONT_NAMES, MISSABLE, Preprocessor

FLAGS = [f"{c}_na" for c in MISSABLE]


def platform_spec(data_dir: Path | str, config_name: str = "demo") -> tuple[Spec, pd.DataFrame, pd.DataFrame]:
    """The spec the platform fits on its sales data (store table, calendars, vocabularies), with the train and
    validation rows, split as the task splits them."""
    from models.registry import get_task
    from models.tasks.sales import SalesConfig, fitted_split

    config = get_task("sales").config(config_name)
    assert isinstance(config, SalesConfig)
    spec, train, valid, _ = fitted_split(Path(data_dir), config)
    spec["y_range"] = [0.0, float(np.log(train["Sales"].max() * config.y_margin))]
    return spec, train, valid


def features_frame(prep: Preprocessor, rows: pd.DataFrame, fills: dict[str, float]) -> pd.DataFrame:
    """Rows (Kaggle's columns) -> the service's features as a DataFrame, flags dropped, ``fills`` filled in."""
    out = prep.raw(rows).drop(columns=FLAGS)
    for c, value in fills.items():
        out[c] = out[c].fillna(value)
    if "Sales" in rows:
        out["Sales"] = np.log(rows["Sales"].to_numpy(dtype=np.float64))
    return out.reset_index(drop=True)


def course_frames(data_dir: Path | str, config_name: str = "demo") -> tuple[pd.DataFrame, pd.DataFrame, list[str], list[str]]:
    """Training and validation frames of the service's features with ``Sales`` = log sales, and the column names.

    fastai's ``FillMissing`` fills only the columns that training had missing; the others are filled here with
    the spec's medians, as the service fills them.
    """
    spec, train, valid = platform_spec(data_dir, config_name)
    prep = Preprocessor(spec)
    raw = prep.raw(train)
    fills = {c: float(spec["medians"][c]) for c in CONT_NAMES if not raw[c].isna().any()}
    return features_frame(prep, train, fills), features_frame(prep, valid, fills), [c for c in CAT_NAMES if c not in FLAGS], list(CONT_NAMES)
