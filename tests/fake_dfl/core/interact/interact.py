"""Prompts that would wait for a keyboard: the driver must answer them all."""


class _Interact:
    def _blocked(self, prompt, *args, **kwargs):
        raise RuntimeError(f"unanswered prompt would block on the keyboard: {prompt}")

    input_str = input_int = input_number = input_bool = input_in_time = _blocked

    def input_skip_pending(self):
        raise RuntimeError("input_skip_pending reads the keyboard")


interact = _Interact()
