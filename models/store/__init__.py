"""The model store: everything course-zoo knows about MLflow, its tracking server and model registry.

* :mod:`~models.store.names`: aliases, tag names and registered-model names, each defined once;
* :mod:`~models.store.connect`: the client, and registry errors in words an operator can act on;
* :mod:`~models.store.reading`: versions behind aliases, verified downloads, the cached champion;
* :mod:`~models.store.writing`: registering a version, copying it to the production registry;
* :mod:`~models.store.light`: the calls of the ops commands, without importing MLflow (REST, SQLite, or MLflow's client);
* :mod:`~models.store.champion`: moving the ``champion`` alias with its tags and audit record;
* :mod:`~models.store.overview`: the registry's view for ``zoo models``;
* :mod:`~models.store.runs`: a training run's log (parameters, metrics in batches, figures, the dataset);
* :mod:`~models.store.audit`: the record of every promotion and rollback.

(The *task* registry, which tasks exist, is :mod:`models.registry`.)
"""
