"""What the balancer and the trainer share: errors, atomic writes, output records and locks
(ownership), the image reader, the worker pool, option limits, plotting and command-line
set-up, and the square model input. The trainer imports these from here; nothing here
imports TensorFlow."""
