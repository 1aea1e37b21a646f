"""The training half of the pipeline: build a network, feed it data, step its parameters, save.

::

    nn ─► Graph ─┐
    data ─► X, y ┼─train.fit─► Executor forward/backward ─► optim step ─► checkpoint ─► file
    schedules ───┘

=============  ===========================================================================
``nn``         layers, activations, losses and ``mlp`` on top of the graph builder
``data``       spiral, digits, ``.npz`` and CIFAR-10 files as ``(X, y)`` arrays
``rules``      update rules ``(w, dw, state)``, pure math in place
``optim``      the optimiser classes around the rules
``schedules``  learning rate per epoch
``train``      ``fit``: batching, epochs, history, best parameters, checkpoints
``checkpoint`` the training section of a ``.gx`` file (spec and run state)
``checks``     hyperparameter ranges, declared once as pydantic types
``progress``   the optional tqdm bar
=============  ===========================================================================

The old flat paths (``graphexec.nn``, ``graphexec.optim``, ``graphexec.train``,
``graphexec.checkpoint``, ``graphexec.data``) re-export these modules.
"""
