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
import uuid
from typing import Any

from features.config import Config
from features.engine import connect, spark_session
from features.pipeline import ENTITY, customer_features, lead_features, normalize_as_of
from features.sources import CanonicalTables, load_tables
from models.catalog import model_config_for
from training.pyfunc import load_champion
from training.train import normalize_task

__all__ = ["score_spark", "score_spark_frame", "spark_features"]


def _feature_table(tables: CanonicalTables, task: str, as_of: dt.datetime, config: Config):
    """The task's population features as an Ibis table (the populations of ``population_features``)."""
    mc = model_config_for(config, task)
    if task == "lead":
        return lead_features(tables, as_of=as_of, horizon_days=mc.horizon_days, step_days=mc.step_days)
    lookback = mc.lookback_days if task == "churn" else None
    return customer_features(tables, as_of=as_of, lookback_days=lookback, horizon_days=mc.horizon_days)


def _model_inputs(frame, schema, task: str):
    """The model's input columns in signature order, cast to the signature's Spark types."""
    from pyspark.sql import functions as F

    missing = [field.name for field in schema.fields if field.name not in frame.columns]
    if missing:
        raise ValueError(
            f"task '{task}': the champion model needs feature column(s) {missing[:5]} that the Spark features "
            "do not have (the data has changed since the model was trained; retrain it)"
        )
    return F.struct(*[F.col(f"`{field.name}`").cast(field.dataType).alias(field.name) for field in schema.fields])


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


def _sibling(out: str) -> str:
    head, _, name = out.rstrip("/").rpartition("/")
    tmp_name = f".{name}.tmp-{uuid.uuid4().hex[:12]}"
    return f"{head}/{tmp_name}" if head else tmp_name


def spark_features(
    config: Config, task: str, *, as_of: dt.date | dt.datetime | str, tables: CanonicalTables | None = None
):
    """The population features of ``task`` at ``as_of`` as a (lazy) Spark DataFrame.

    The same rows and columns as :func:`features.pipeline.population_features`, before the hand-off
    to pandas (strings stay strings, booleans stay booleans).

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

    Raises
    ------
    ValueError
        ``tables`` are not on the PySpark backend.
    """
    task = normalize_task(task)
    spark_config = config if config.engine == "spark" else config.model_copy(update={"engine": "spark"})
    if tables is None:
        tables = load_tables(spark_config, con=connect(spark_config))
    if tables.con.name != "pyspark":
        raise ValueError(f"Spark scoring needs tables on the PySpark backend, got '{tables.con.name}'")
    spark = spark_session(spark_config)
    view = f"crmscore_features_{task}_{uuid.uuid4().hex[:8]}"
    tables.con.create_view(view, _feature_table(tables, task, normalize_as_of(as_of), config), overwrite=True)
    try:
        # The DataFrame keeps the resolved plan; the view is only the hand-over from Ibis.
        return spark.table(view)
    finally:
        spark.catalog.dropTempView(view)


def score_spark_frame(
    config: Config, task: str, features, *, as_of: dt.date | dt.datetime | str, explain: bool = False
):
    """Score a Spark DataFrame of ``task``'s features with the champion model through ``spark_udf``.

    Returns a lazy Spark DataFrame with the columns of :func:`training.score.score_batch`: entity id,
    ``as_of``, ``probability``, ``tier`` (or ``grade``), money values, ``reasons`` (with ``explain``),
    ``model_name``, ``model_version``.

    Raises
    ------
    training.pyfunc.NoChampionError
        No champion model is registered for ``task``.
    ValueError
        The model needs a feature column that ``features`` does not have.
    """
    import mlflow
    from pyspark.sql import functions as F
    from pyspark.sql.types import StructField, StructType

    task = normalize_task(task)
    ts = normalize_as_of(as_of)
    spark = features.sparkSession
    # The champion resolved once; the UDF loads that exact version even if the alias moves meanwhile.
    _, info = load_champion(config, task)
    model_uri = f"models:/{info['model_name']}/{info['version']}"
    signature = mlflow.models.get_model_info(model_uri).signature
    entity = ENTITY[task]
    # Nullable fields: the UDF's Arrow batches are always nullable, and Spark checks them against this type.
    result_type = StructType(
        [
            StructField(f.name, f.dataType, nullable=True)
            for f in signature.outputs.as_spark_schema().fields
            if f.name != entity and (explain or f.name != "reasons")
        ]
    )
    params: dict[str, Any] = {"k": model_config_for(config, task).top_k_reasons, "explain": explain}
    if "as_of" in {p.name for p in (signature.params or [])}:
        # The scoring date picks the seasonal prior shift; models logged before the param get their training one.
        params["as_of"] = ts.isoformat(sep=" ")
    udf = mlflow.pyfunc.spark_udf(spark, model_uri, result_type=result_type, env_manager="local", params=params)
    scored = features.select(
        F.col(entity).cast("string").alias(entity),
        udf(_model_inputs(features, signature.inputs.as_spark_schema(), task)).alias("s"),
    )
    return scored.select(
        entity,
        F.lit(ts.isoformat(sep=" ")).cast("timestamp_ntz").alias("as_of"),
        *[F.col(f"s.`{f.name}`").alias(f.name) for f in result_type.fields],
        F.lit(info["model_name"]).alias("model_name"),
        F.lit(str(info["version"])).alias("model_version"),
    )


def score_spark(
    config: Config,
    task: str,
    *,
    as_of: dt.date | dt.datetime | str,
    out_dir: str,
    explain: bool = False,
    tables: CanonicalTables | None = None,
) -> int:
    """Score ``task``'s population at ``as_of`` on Spark with the champion model; return the row count.

    Features on Spark (:func:`spark_features`), scores through ``mlflow.pyfunc.spark_udf``
    (:func:`score_spark_frame`), written as Parquet to a temporary sibling folder and renamed to
    ``out_dir``.

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
        Add ``reasons`` (a JSON list of ``{"text", "feature", "value", "impact"}`` per row).
    tables
        Canonical tables already loaded on the PySpark backend; by default loaded from ``config``.

    Raises
    ------
    training.pyfunc.NoChampionError
        No champion model is registered for ``task``.
    ValueError
        ``tables`` are not on Spark, or the model needs a feature column the data does not give.
    """
    features = spark_features(config, task, as_of=as_of, tables=tables)
    result = score_spark_frame(config, task, features, as_of=as_of, explain=explain)
    spark = features.sparkSession
    out = str(out_dir)
    tmp = _sibling(out)
    result.write.mode("errorifexists").parquet(tmp)
    _replace_folder(spark, tmp, out)
    return spark.read.parquet(out).count()


if __name__ == "__main__":  # spark-submit entry point: the crmscore command line
    from serving.cli import main

    main()
