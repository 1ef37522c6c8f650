"""Batch scoring as a Spark job: features on Spark, the champion model as a ``mlflow.pyfunc.spark_udf``.

The features are the same Ibis expressions as everywhere else, run on the PySpark backend; the
model is the registered pyfunc, so the scores equal :func:`training.score.score_batch` for the
same data and cut-off. Output columns are also the same: entity id, ``as_of``, ``probability``,
``tier`` (or ``grade``), the task's money values, ``reasons`` (with ``explain``), ``model_name``
and ``model_version``. The output is a folder of Parquet files written atomically: to a temporary
sibling folder first, then renamed into place (an atomic rename on local disks and HDFS; on
object stores such as S3 a rename is a copy, see docs/spark.md).

Run as a script, this module is the ``crmscore`` command line, so that ``spark-submit`` (which
needs a ``.py`` file) can start any command: ``spark-submit .../serving/spark_batch.py score churn ...``.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from features.config import Config, ModelConfig
from features.engine import connect, spark_session
from features.files import OutputError
from features.pipeline import ENTITY, check_population, normalize_as_of, population_table, stable_floats
from features.sources import CanonicalTables, load_tables
from models.catalog import model_config_for, scoring_config
from models.drift import FeatureDrift, with_unseen
from models.scorer import Scorer, count_unseen, encode_frame, unseen_values
from training.pyfunc import REASON_COLUMNS, load_champion
from training.score import BatchScores, batch_facts
from training.train import Steps, normalize_task

__all__ = ["check_out_dir", "score_spark", "score_spark_frame", "spark_drift", "spark_features"]


def _stabilized(features):
    """``features`` with :func:`features.pipeline.stable_floats` applied to every double column.

    The hand-off to pandas rounds away the engines' summation noise (a net spend of 5.7e-14
    instead of 0.0) before training and in-process scoring; the same rounding here makes Spark
    score and measure drift on the values the model was trained on.
    """
    from pyspark.sql.types import DoubleType, FloatType

    doubles = [f.name for f in features.schema.fields if isinstance(f.dataType, DoubleType | FloatType)]
    if not doubles:
        return features

    def stabilize(batches):
        for batch in batches:
            for name in doubles:
                batch[name] = stable_floats(batch[name].to_numpy(dtype=np.float64))
            yield batch

    return features.mapInPandas(stabilize, features.schema)


def _model_inputs(frame, schema, task: str) -> list:
    """The model's input columns in signature order, cast to the signature's Spark types; not the optional
    ``as_of`` (the params give the scoring date, the same for the whole batch)."""
    from pyspark.sql import functions as F

    from training.pyfunc import AS_OF

    schema = type(schema)([field for field in schema.fields if field.name != AS_OF])
    missing = [field.name for field in schema.fields if field.name not in frame.columns]
    if missing:
        raise ValueError(
            f"task '{task}': the champion model needs feature column(s) {missing[:5]} that the Spark features "
            "do not have (the data has changed since the model was trained; retrain it)"
        )
    return [F.col(f"`{field.name}`").cast(field.dataType).alias(field.name) for field in schema.fields]


def _signature(info: dict[str, Any]):
    """The registry URI of the resolved champion version and its MLflow signature."""
    import mlflow

    model_uri = f"models:/{info['model_name']}/{info['version']}"
    return model_uri, mlflow.models.get_model_info(model_uri).signature


def spark_drift(scorer: Scorer, features) -> list[FeatureDrift]:
    """Drift of a Spark DataFrame of features from the model's training rows, largest PSI first.

    Each partition encodes its rows as the model does (:meth:`models.scorer.Scorer.prepare`) and
    counts them into the training profile's bins (:meth:`models.drift.FeatureProfile.counts`), and
    its category values no training row had (:func:`models.scorer.unseen_values`); the driver sums
    both, so the result equals :meth:`Scorer.drift` with the features on the whole table. Only the
    profile and the encodings go to the executors, not the boosters. Empty for an empty DataFrame
    or a model trained before drift profiles.
    """
    profile = getattr(scorer, "profile", None)
    if profile is None:
        return []
    names, categories = scorer.feature_names, scorer.categories

    def partition_counts(batches):
        total, unseen = None, defaultdict(Counter)
        for batch in batches:
            X = encode_frame(batch, names, categories)
            counts = profile.counts(X)
            total = counts if total is None else total + counts
            for name, counts in count_unseen(unseen_values(batch, X, names, categories, profile)).items():
                unseen[name].update(counts)
        if total is not None and total[0] > 0:
            yield pd.DataFrame({"counts": [total.tolist()], "unseen": [json.dumps(unseen)]})

    missing = [name for name in names if name not in features.columns]
    if missing:
        raise ValueError(f"the features have no column(s) {missing[:5]} for the model's drift profile")
    rows = (
        features.select(*[f"`{name}`" for name in names])
        .mapInPandas(partition_counts, "counts array<double>, unseen string")
        .collect()
    )
    if not rows:
        return []
    total = np.sum([np.asarray(row["counts"]) for row in rows], axis=0)
    unseen: dict[str, Counter] = defaultdict(Counter)
    for row in rows:  # a partition's {feature: {value: rows}}
        for name, counts in json.loads(row["unseen"]).items():
            unseen[name].update(counts)
    return with_unseen(profile.compare_counts(total), unseen, int(total[0]))


def _replace_folder(spark, tmp: str, out: str) -> None:
    """Move the finished ``tmp`` folder to ``out`` with the Hadoop FileSystem of ``out`` (local, HDFS, S3...)."""
    jvm = spark.sparkContext._jvm
    hadoop_conf = spark.sparkContext._jsc.hadoopConfiguration()
    target = jvm.org.apache.hadoop.fs.Path(out)
    source = jvm.org.apache.hadoop.fs.Path(tmp)
    fs = target.getFileSystem(hadoop_conf)
    old = None
    if fs.exists(target):
        old = jvm.org.apache.hadoop.fs.Path(f"{tmp}.old")
        if not fs.rename(target, old):
            raise OSError(f"could not move the previous output {out} aside to {tmp}.old")
    if not fs.rename(source, target):
        if old is not None:
            fs.rename(old, target)
        raise OSError(f"could not rename {tmp} to {out}")
    if old is not None:
        fs.delete(old, True)


def check_out_dir(spark, out: str) -> list:
    """Refuse, before any work, an output folder Spark could not write, with the Hadoop FileSystem of ``out``;
    return the folders above ``out`` that do not exist yet (Hadoop paths, innermost first), which the
    write makes and a failed run removes (:func:`_remove_empty`).

    A file at ``out`` (the output is a folder of Parquet files) or where one of its folders should
    be, or a nearest existing folder in which a file cannot be created (probed with an empty file,
    removed at once), raises :class:`features.files.OutputError` naming the path and the reason.
    """
    from py4j.protocol import Py4JJavaError

    hadoop = spark.sparkContext._jvm.org.apache.hadoop.fs
    target = hadoop.Path(out)
    folder = target.getParent()
    try:
        fs = target.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
        if fs.exists(target) and fs.getFileStatus(target).isFile():
            raise OutputError(f"--out {out}: is a file; with engine: spark the output is a folder of Parquet files")
        missing = []
        while folder is not None and not fs.exists(folder):
            missing.append(folder)
            folder = folder.getParent()
        if folder is None:
            return missing
        if fs.getFileStatus(folder).isFile():
            raise OutputError(f"--out {out}: {folder.toString()} is a file, not a folder")
        probe = hadoop.Path(folder, f".crmscore-check-{uuid.uuid4().hex[:12]}")
        fs.create(probe, False).close()
        fs.delete(probe, False)
        return missing
    except Py4JJavaError as exc:
        where = folder.toString() if folder is not None else out
        raise OutputError(f"--out {out}: cannot write in {where} ({exc.java_exception.getMessage()})") from exc


# What a Spark write's error says of a disk it cannot write on (the Java exceptions' text).
_FULL_DISK = ("No space left on device", "Disk quota exceeded", "Read-only file system")


def _remove_empty(spark, folders: list) -> None:
    """Delete ``folders`` (innermost first) while they are empty: a failed run leaves no empty folder."""
    if not folders:
        return
    fs = folders[0].getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    for folder in folders:
        try:
            if not fs.exists(folder) or fs.listStatus(folder):
                break
            fs.delete(folder, False)
        except Exception:  # noqa: BLE001 - the run's own error is the one to report
            break


def _sibling(out: str, suffix: str | None = None) -> str:
    head, _, name = out.rstrip("/").rpartition("/")
    tmp_name = f".{name}.tmp-{uuid.uuid4().hex[:12] if suffix is None else suffix}"
    return f"{head}/{tmp_name}" if head else tmp_name


def _remove_temporaries(spark, out: str) -> int:
    """Delete the temporary sibling folders of ``out`` (``.NAME.tmp-*``, and their ``.old``) that a
    killed or failed run left behind; returns how many. Each run writes to a new one, so without
    this they piled up beside the output (on S3, as objects). A run stopped between moving the
    previous output aside and moving its own in left ``out`` missing and the previous output in a
    ``.old``: that is moved back, not deleted."""
    hadoop = spark.sparkContext._jvm.org.apache.hadoop.fs
    pattern = hadoop.Path(_sibling(out, "*"))
    target = hadoop.Path(out)
    fs = pattern.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    found = [status.getPath() for status in fs.globStatus(pattern) or []]
    aside = [path for path in found if path.getName().endswith(".old")]
    if aside and not fs.exists(target) and fs.rename(aside[0], target):
        found.remove(aside[0])
    return sum(int(fs.delete(path, True)) for path in found)


def _stop_jobs(spark, out: str, missing: list, *, timeout_s: float = 20.0) -> None:
    """A signal (SIGTERM, Ctrl-C) stopped the run: cancel Spark's jobs and remove this run's temporary folder
    and the folders it made, from a thread of its own, within ``timeout_s``.

    Not from the main thread: the signal's exit was raised inside py4j's read of the write's answer, and
    that connection (py4j gives each Python thread its own) is still waiting for it, so any call on it
    waited for the write to finish (an ops engineer measured 42 s before the run exited; its half-written
    ``.NAME.tmp-*`` folder stayed) and then read the write's answer as its own. A new thread gets a new
    connection; cancelled, the tasks stop within seconds."""

    def stop() -> None:
        context = spark.sparkContext
        context.setLogLevel("OFF")  # the cancelled tasks' 100 lines of Java stack traces; the process is ending
        context.cancelAllJobs()
        tracker = context.statusTracker()
        deadline = time.monotonic() + timeout_s
        while tracker.getActiveJobsIds() and time.monotonic() < deadline:
            time.sleep(0.1)
        _remove_temporaries(spark, out)
        _remove_empty(spark, missing)

    def quietly() -> None:
        try:
            stop()
        except Exception:  # noqa: BLE001 - the signal is what the run reports
            pass

    thread = threading.Thread(target=quietly, name="crmscore-stop-spark-jobs", daemon=True)
    thread.start()
    thread.join(timeout_s + 10)


def _on_spark(config: Config) -> Config:
    return config if config.engine == "spark" else config.model_copy(update={"engine": "spark"})


def _spark_tables(config: Config) -> CanonicalTables:
    """The canonical tables of ``config`` on the PySpark backend, whatever ``config.engine`` says."""
    spark_config = _on_spark(config)
    return load_tables(spark_config, con=connect(spark_config))


def spark_features(
    config: Config,
    task: str,
    *,
    as_of: dt.date | dt.datetime | str,
    tables: CanonicalTables | None = None,
    model_config: ModelConfig | None = None,
):
    """The population features of ``task`` at ``as_of`` as a (lazy) Spark DataFrame.

    The same rows, columns and values as :func:`features.pipeline.population_features`, before the
    hand-off to pandas's types (strings stay strings, booleans stay booleans).

    Parameters
    ----------
    config
        The run configuration (its ``spark`` section sets up the session when none is active).
    task
        ``churn``, ``next_purchase`` (or ``next-purchase``) or ``lead``.
    as_of
        The cut-off (a date is midnight at the start of that day).
    tables
        Canonical tables already loaded on the PySpark backend; by default loaded from ``config``
        on Spark, whatever ``config.engine`` says.
    model_config
        The ``models.<task>`` settings; by default the config's (a model is scored with those it
        was trained with, :func:`models.catalog.scoring_config`).

    Raises
    ------
    ValueError
        ``tables`` are not on the PySpark backend.
    """
    task = normalize_task(task)
    spark_config = _on_spark(config)
    if tables is None:
        tables = _spark_tables(config)
    if tables.con.name != "pyspark":
        raise ValueError(f"Spark scoring needs tables on the PySpark backend, got '{tables.con.name}'")
    spark = spark_session(spark_config)
    view = f"crmscore_features_{task}_{uuid.uuid4().hex[:8]}"
    mc = model_config_for(config, task) if model_config is None else model_config
    table = population_table(tables, task, normalize_as_of(as_of), mc)
    tables.con.create_view(view, table, overwrite=True)
    try:
        # The DataFrame keeps the resolved plan; the view is only the hand-over from Ibis.
        return _stabilized(spark.table(view))
    finally:
        spark.catalog.dropTempView(view)


def score_spark_frame(
    config: Config, task: str, features, *, as_of: dt.date | dt.datetime | str, explain: bool = False
):
    """Score a Spark DataFrame of ``task``'s features with the champion model through ``spark_udf``.

    Returns a lazy Spark DataFrame with the columns of :func:`training.score.score_batch`: entity id,
    ``as_of``, ``probability``, ``tier`` (or ``grade``), money values, ``reasons`` and
    ``counter_reasons`` (with ``explain``; models logged before counter-reasons have none),
    ``model_name``, ``model_version``.

    Raises
    ------
    training.pyfunc.NoChampionError
        No champion model is registered for ``task``.
    ValueError
        The model needs a feature column that ``features`` does not have.
    """
    task = normalize_task(task)
    scorer, info = load_champion(config, task)
    return _score_with(config, task, features, scorer, info, as_of=as_of, explain=explain)[0]


def _score_with(config: Config, task: str, features, scorer: Scorer, info: dict[str, Any], *, as_of, explain: bool):
    """:func:`score_spark_frame` with the champion already resolved (``load_champion``'s scorer and info).

    An anchored model takes ``features`` as the population: a first pass scores it without
    reasons and the driver solves for the anchor from all its probabilities
    (``Scorer.anchor_shift``, as ``Scorer.population_shift`` does in-process); the returned frame
    applies it.
    Returns the lazy scored frame and that shift (0 without an anchor).
    """
    import mlflow
    from pyspark.sql import functions as F
    from pyspark.sql.types import StructField, StructType

    ts = normalize_as_of(as_of)
    spark = features.sparkSession
    # The champion resolved once; the UDF loads that exact version even if the alias moves meanwhile.
    model_uri, signature = _signature(info)
    entity = ENTITY[task]
    # Nullable fields: the UDF's Arrow batches are always nullable, and Spark checks them against this type.
    result_type = StructType(
        [
            StructField(f.name, f.dataType, nullable=True)
            for f in signature.outputs.as_spark_schema().fields
            if f.name != entity and (explain or f.name not in REASON_COLUMNS)
        ]
    )
    k = model_config_for(config, task).top_k_reasons
    params: dict[str, Any] = {"k": k, "explain": explain}
    if explain and "counter_k" in {p.name for p in (signature.params or [])}:
        params["counter_k"] = k
    if "as_of" in {p.name for p in (signature.params or [])}:
        # The scoring date picks the seasonal prior shift; models logged before the param get their training one.
        params["as_of"] = ts.isoformat(sep=" ")
    inputs = F.struct(*_model_inputs(features, signature.inputs.as_spark_schema(), task))
    if "anchor" in {p.name for p in (signature.params or [])}:
        # Each Arrow batch is a slice of the population, never the population: the driver finds the
        # anchor below, and both passes take the shift as given (0 in the first: the model's own level).
        params["anchor"] = "none"
    if scorer.anchored and "population_shift" in {p.name for p in (signature.params or [])}:
        first = mlflow.pyfunc.spark_udf(
            spark,
            model_uri,
            result_type=StructType([f for f in result_type.fields if f.name == "probability"]),
            env_manager="local",
            params={**params, "explain": False},
        )
        probability = features.select(first(inputs).alias("s")).select("s.probability").toPandas()["probability"]
        params["population_shift"] = scorer.anchor_shift(probability.to_numpy(dtype=np.float64))
    udf = mlflow.pyfunc.spark_udf(spark, model_uri, result_type=result_type, env_manager="local", params=params)
    scored = features.select(F.col(entity).cast("string").alias(entity), udf(inputs).alias("s"))
    frame = scored.select(
        entity,
        F.lit(ts.isoformat(sep=" ")).cast("timestamp_ntz").alias("as_of"),
        *[F.col(f"s.`{f.name}`").alias(f.name) for f in result_type.fields],
        F.lit(info["model_name"]).alias("model_name"),
        F.lit(str(info["version"])).alias("model_version"),
    )
    return frame, float(params.get("population_shift", 0.0))


def score_spark(
    config: Config,
    task: str,
    *,
    as_of: dt.date | dt.datetime | str,
    out_dir: str,
    explain: bool = False,
    tables: CanonicalTables | None = None,
    allow_empty: bool = False,
    progress: Callable[[str], None] | None = None,
    version: str | None = None,
) -> BatchScores:
    """Score ``task``'s population at ``as_of`` on Spark with the champion model.

    Features on Spark (:func:`spark_features`, persisted for the two passes over them), scores
    through ``mlflow.pyfunc.spark_udf`` (:func:`score_spark_frame`), written as Parquet to a
    temporary sibling folder and renamed to ``out_dir``; then the features' drift from the training
    rows (:func:`spark_drift`). Returns the row count, ``out_dir`` and the drift, as
    :func:`training.score.score_batch` does.

    Parameters
    ----------
    config
        The run configuration; ``spark.master`` and ``spark.conf`` set up the session when none is
        active (under ``spark-submit`` the submitted session is used).
    task
        ``churn``, ``next_purchase`` (or ``next-purchase``) or ``lead``.
    as_of
        The cut-off (a date is midnight at the start of that day).
    out_dir
        The output folder of Parquet files: a local path or any URI Spark can write (``s3a://``,
        ``hdfs://``). An existing folder is replaced.
    explain
        Add ``reasons`` and ``counter_reasons`` (JSON lists of ``{"text", "feature", "value",
        "impact"}`` per row).
    tables
        Canonical tables already loaded on the PySpark backend; by default loaded from ``config``.
    allow_empty
        Write an empty folder for an empty population instead of refusing it.
    progress
        A callback given each step's line (``[3/4  31.0s] scoring ...``), as ``train`` prints them; the
        first comes once the champion has loaded.
    version
        A registered version instead of the champion.

    Raises
    ------
    training.pyfunc.NoChampionError
        No champion model is registered for ``task``.
    ValueError
        ``tables`` are not on Spark, or the model needs a feature column the data does not give.
    features.pipeline.EmptyPopulationError
        The population at ``as_of`` is empty and ``allow_empty`` is false; nothing is written.
    """
    from pyspark import StorageLevel

    task = normalize_task(task)
    out = str(out_dir)
    suffix = out.rstrip("/").rpartition(".")[2].lower()
    if suffix in ("csv", "json", "txt"):
        # A job moved from DuckDB keeps its --out: a folder named scores.csv would break its CSV readers.
        raise OutputError(
            f"--out {out}: with engine: spark the output is a folder of Parquet files, not a {suffix.upper()} "
            f"file; give a folder name (e.g. scores/{task}-<date>)"
        )
    step = Steps(progress, 4)
    scorer, info = load_champion(config, task, version=version)
    mc, settings_warning = scoring_config(config, task, info)
    step("the Spark session")
    spark = spark_session(config)
    missing = check_out_dir(spark, out)
    step(("reading the tables and " if tables is None else "") + "the population's features")
    if tables is None:
        tables = _spark_tables(config)
    features = spark_features(
        config, task, as_of=as_of, tables=tables.with_vocabulary(scorer.vocabulary), model_config=mc
    )
    features = features.persist(StorageLevel.MEMORY_AND_DISK)
    stopped = False
    try:
        if not allow_empty and features.isEmpty():
            check_population(0, tables, task, as_of=as_of, mc=mc)
        result, shift = _score_with(config, task, features, scorer, info, as_of=as_of, explain=explain)
        _remove_temporaries(spark, out)  # of earlier runs that were killed
        tmp = _sibling(out)
        # Spark is lazy: the model's UDF scores as the folder is written.
        step(f"scoring{' with reasons' if explain else ''} and writing {out}")
        try:
            result.write.mode("errorifexists").parquet(tmp)
            _replace_folder(spark, tmp, out)
        except Exception as exc:
            _remove_temporaries(spark, out)  # this run's, half written
            _remove_empty(spark, missing)  # and the folders it made for it
            full = next((why for why in _FULL_DISK if why in str(exc)), None)
            if full is not None:  # a full disk: the path and the reason, not 749 lines of Java
                raise OutputError(f"--out {out}: cannot be written ({full})") from exc
            raise
        step("the features' drift from the training rows")
        drift = tuple(spark_drift(scorer, features))
    except (SystemExit, KeyboardInterrupt):
        stopped = True  # this thread's py4j connection still waits for the interrupted call's answer
        _stop_jobs(spark, out, missing)
        raise
    finally:
        if not stopped:
            features.unpersist()
    return BatchScores(
        rows=spark.read.parquet(out).count(),
        out=out,
        drift=drift,
        population_shift=shift,
        settings_warning=settings_warning,
        **batch_facts(info, tables, task, as_of),
    )


if __name__ == "__main__":  # spark-submit entry point: the crmscore command line
    from serving.cli import main

    main()
