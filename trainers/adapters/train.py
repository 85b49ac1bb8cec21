"""LoRA SFT and DPO with peft and trl on CPU torch, watched for divergence, merged back into the base.

One `TrainConfig` holds the knobs; defaults suit a ~135M model on 2 CPU cores (minutes). On GPU trainers the
same code takes QLoRA (a `BitsAndBytesConfig` through `quantization_config`), DeepSpeed ZeRO-3 (`deepspeed=`
in the trainer args) and FlashAttention (`attn_implementation="flash_attention_2"` when loading): documented
options for the compose GPU trainer, not used on CPU.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from trainers.adapters.hf import HfModel
from trainers.core.divergence import Divergence, DivergenceConfig, check
from trainers.core.pairs import DpoPair, SftExample

log = logging.getLogger(__name__)


class TrainingDivergedError(RuntimeError):
    """Fatal for this round: the loss or KL series diverged; the reason says where and why."""

    def __init__(self, divergence: Divergence) -> None:
        super().__init__(divergence.reason)
        self.divergence = divergence


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Training knobs for one round."""

    max_steps: int = 60
    learning_rate: float = 2e-4
    batch_size: int = 4
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    max_length: int = 384
    dpo_beta: float = 0.1
    seed: int = 0
    divergence: DivergenceConfig = field(default_factory=DivergenceConfig)


@dataclass(slots=True)
class TrainStats:
    """What a run logged: the loss series, the KL series (DPO), steps done."""

    kind: str
    losses: list[float] = field(default_factory=list)
    kls: list[float] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return len(self.losses)

    def summary(self) -> dict[str, Any]:
        """First/last loss and the step count, for reports and the registry."""
        return {"kind": self.kind, "steps": self.steps,
                "loss_first": round(self.losses[0], 4) if self.losses else None,
                "loss_last": round(self.losses[-1], 4) if self.losses else None,
                "kl_last": round(self.kls[-1], 4) if self.kls else None}


def _drift(logs: dict[str, float], beta: float) -> float:
    """DPO's KL-style drift from the reference: mean |log pi/pi_ref| per sequence over chosen and rejected.

    trl logs the implicit rewards beta * log(pi/pi_ref); dividing by beta gives the log-ratios in nats.
    """
    return (abs(float(logs["rewards/chosen"])) + abs(float(logs["rewards/rejected"]))) / (2.0 * beta)


def _watch(stats: TrainStats, config: DivergenceConfig, beta: float = 1.0) -> Any:
    """A trainer callback feeding every logged loss/KL to the core's divergence check; stops on divergence."""
    from transformers import TrainerCallback  # noqa: PLC0415

    class Watch(TrainerCallback):
        diverged: Divergence | None = None

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None,
                   **kwargs: Any) -> None:
            logs = logs or {}
            if "loss" in logs:
                stats.losses.append(float(logs["loss"]))
            if "rewards/chosen" in logs and "rewards/rejected" in logs:
                stats.kls.append(_drift(logs, beta))
            if self.diverged is None and (found := check(stats.losses, stats.kls, config)) is not None:
                self.diverged = found
                control.should_training_stop = True

    return Watch()


def _lora(config: TrainConfig) -> Any:
    from peft import LoraConfig  # noqa: PLC0415

    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=list(config.target_modules), task_type="CAUSAL_LM")


def _common_args(config: TrainConfig, out: str) -> dict[str, Any]:
    return {"output_dir": out, "max_steps": config.max_steps, "learning_rate": config.learning_rate,
            "per_device_train_batch_size": config.batch_size, "logging_steps": 1, "save_strategy": "no",
            "report_to": [], "use_cpu": True, "seed": config.seed, "disable_tqdm": True,
            "lr_scheduler_type": "constant", "warmup_steps": 0, "max_length": config.max_length,
            # trl turns activation checkpointing on by default: it saves memory on GPUs and costs time here.
            "gradient_checkpointing": False, "dataloader_num_workers": 0,
            # trl defaults to bf16 autocast; float32 is what CPUs without bf16 units run fastest and exactly.
            "bf16": False, "fp16": False}


def _finish(trainer: Any, watch: Any, stats: TrainStats) -> Any:
    from transformers.trainer_callback import PrinterCallback  # noqa: PLC0415

    trainer.remove_callback(PrinterCallback)  # it prints every log dict to stdout; the watch logs instead
    trainer.train()
    if watch.diverged is not None:
        log.warning("training diverged", extra={"kind": stats.kind, "reason": watch.diverged.reason})
        raise TrainingDivergedError(watch.diverged)
    log.info("training done", extra=stats.summary())
    return trainer.model.merge_and_unload()


def sft(base: HfModel, examples: Sequence[SftExample], config: TrainConfig) -> tuple[HfModel, TrainStats]:
    """LoRA SFT on prompt -> teacher answer (loss on the answer only); returns the merged model.

    Raises TrainingDivergedError when the loss diverges (non-finite, or blows up against its best window).
    """
    from datasets import Dataset  # noqa: PLC0415
    from trl.trainer.sft_config import SFTConfig  # noqa: PLC0415
    from trl.trainer.sft_trainer import SFTTrainer  # noqa: PLC0415

    rows = [{"prompt": [{"role": "user", "content": e.prompt}],
             "completion": [{"role": "assistant", "content": e.answer}]} for e in examples]
    stats = TrainStats("sft")
    watch = _watch(stats, config.divergence)
    with tempfile.TemporaryDirectory(prefix="ebrain-sft-") as out:
        args = SFTConfig(**_common_args(config, out), completion_only_loss=True, packing=False,
                         dataset_num_proc=None)
        trainer = SFTTrainer(model=base.model, args=args, train_dataset=Dataset.from_list(rows),
                             processing_class=base.tokenizer, peft_config=_lora(config), callbacks=[watch])
        merged = _finish(trainer, watch, stats)
    return HfModel(merged, base.tokenizer), stats


def dpo(base: HfModel, pairs: Sequence[DpoPair], config: TrainConfig) -> tuple[HfModel, TrainStats]:
    """LoRA DPO: teacher (or user-preferred) answers chosen over edge drafts; the frozen base is the reference.

    KL to the reference is tracked from trl's reward logs; divergence raises TrainingDivergedError.
    """
    from datasets import Dataset  # noqa: PLC0415
    from trl.trainer.dpo_config import DPOConfig  # noqa: PLC0415
    from trl.trainer.dpo_trainer import DPOTrainer  # noqa: PLC0415

    rows = [{"prompt": [{"role": "user", "content": p.prompt}],
             "chosen": [{"role": "assistant", "content": p.chosen}],
             "rejected": [{"role": "assistant", "content": p.rejected}]} for p in pairs]
    stats = TrainStats("dpo")
    watch = _watch(stats, config.divergence, config.dpo_beta)
    with tempfile.TemporaryDirectory(prefix="ebrain-dpo-") as out:
        args = DPOConfig(**_common_args(config, out), beta=config.dpo_beta)
        trainer = DPOTrainer(model=base.model, args=args, train_dataset=Dataset.from_list(rows),
                             processing_class=base.tokenizer, peft_config=_lora(config), callbacks=[watch])
        merged = _finish(trainer, watch, stats)
    return HfModel(merged, base.tokenizer), stats


def finite(xs: Sequence[float]) -> bool:
    """Every value is a real number."""
    return all(math.isfinite(x) for x in xs)
