"""A Keras Adam with ``torch.optim.Adam``'s update rule (imported only when used).

Keras 3 Adam and torch Adam differ only in where epsilon enters::

    keras:  w -= lr * sqrt(bc2) / bc1 * m / (sqrt(v) + eps)
    torch:  w -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)
            =  lr * sqrt(bc2) / bc1 * m / (sqrt(v) + eps * sqrt(bc2))

with ``bc1 = 1 - beta1**t`` and ``bc2 = 1 - beta2**t``. With the same ``eps`` the Keras
denominator is larger in the first steps (``sqrt(bc2)`` is 0.03 at step 1), which moves weights
with gradients below about 1e-6 differently. Over 20 steps this alone separates the two loss
curves by up to ~8e-4 (relative); with :class:`TorchAdam` they agree to ~1e-4 (see
``docs/parity.md``).
"""

from __future__ import annotations


def torch_adam(learning_rate=1e-3, beta_1: float = 0.9, beta_2: float = 0.999,
               epsilon: float = 1e-8, **kwargs):
    """A Keras optimizer that performs exactly ``torch.optim.Adam``'s update.

    ``learning_rate`` may be a Keras ``LearningRateSchedule``; ``kwargs`` go to the Keras
    optimizer (e.g. ``global_clipnorm``), so it can stand in for ``keras.optimizers.Adam`` in
    ``ptycho.backends.tensorflow.training.make_optimizer``.
    """
    import keras
    from keras import ops

    class TorchAdam(keras.optimizers.Adam):
        """Keras Adam with epsilon added to the bias-corrected ``sqrt(v)`` (torch semantics)."""

        def update_step(self, gradient, variable, learning_rate):
            lr = ops.cast(learning_rate, variable.dtype)
            gradient = ops.cast(gradient, variable.dtype)
            step = ops.cast(self.iterations + 1, variable.dtype)
            bc1 = 1 - ops.power(ops.cast(self.beta_1, variable.dtype), step)
            bc2 = 1 - ops.power(ops.cast(self.beta_2, variable.dtype), step)
            index = self._get_variable_index(variable)
            m = self._momentums[index]
            v = self._velocities[index]
            self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
            self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v),
                                            1 - self.beta_2))
            denominator = ops.add(ops.divide(ops.sqrt(v), ops.sqrt(bc2)), self.epsilon)
            self.assign_sub(variable, ops.divide(ops.multiply(m, lr / bc1), denominator))

    return TorchAdam(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                     **kwargs)
