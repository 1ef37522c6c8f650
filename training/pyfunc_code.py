"""The model code MLflow logs for every crmscore model ("models from code").

``mlflow.pyfunc.log_model(python_model=<this file>)`` copies this file into the model and runs it
when the model is loaded, instead of unpickling a wrapper object: the wrapper is plain code anyone
can read in the model's ``code/`` folder. The trained state is the ``scorer`` artifact, which
:meth:`training.pyfunc.CrmScoreModel.load_context` reads.
"""

import mlflow

from training.pyfunc import CrmScoreModel

mlflow.models.set_model(CrmScoreModel())
