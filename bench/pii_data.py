# ruff: noqa: RUF001 - Chinese text is written with fullwidth punctuation on purpose
"""A labelled PII corpus: ~1 KB English and Chinese texts with PII at known character spans.

Deterministic for a seed. Labels use the ingestion entity names (PERSON, EMAIL_ADDRESS, PHONE_NUMBER,
CREDIT_CARD, IP_ADDRESS, CN_MOBILE, CN_RESIDENT_ID, API_KEY). `python -m bench.pii_data OUT.jsonl N`.
"""

from __future__ import annotations

import json
import random
import string
import sys
from pathlib import Path
from typing import Any

FIRST = ["John", "Maria", "Wei", "Priya", "Ahmed", "Olga", "Carlos", "Fatima", "James", "Sofia", "Liam", "Emma",
         "Noah", "Aisha", "Lucas", "Hannah", "Mateo", "Chloe", "Ivan", "Grace"]
LAST = ["Smith", "Garcia", "Johnson", "Patel", "Kowalski", "Novak", "Fernandez", "Okafor", "Brown", "Rossi",
        "Miller", "Andersen", "Dubois", "Silva", "Schneider", "Taylor", "Morgan", "Nguyen", "Walker", "Bennett"]
CN_SURNAME = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
CN_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚"
EN_FILLER = [
    "The Kafka consumer group lags behind when the broker restarts during a rolling upgrade.",
    "We run the gateway on two replicas and share the MQTT subscription between them.",
    "Retention on the escalation topic is seven days, which is plenty for replays.",
    "How do I configure the edge agent so that it escalates only low-confidence answers?",
    "After the upgrade the dashboards in Grafana stopped showing the queue depth.",
    "Our Prometheus alert fires whenever the dead-letter topic receives more than ten messages an hour.",
    "The model was quantized to four bits and still answers most support questions correctly.",
    "Please explain why the cloud worker commits offsets only after the reply is acknowledged.",
    "We deploy with Helm and Terraform, and the Jenkins pipeline runs the integration tests first.",
    "Latency went up after we enabled compression on the producer, so we turned it off again.",
    "Is it safe to raise the partition count of a topic while consumers are running?",
    "The device lost its connection for an hour and then sent everything it had spooled, in order.",
    "The Orion project moved its staging cluster to Frankfurt last spring.",
    "Support for the Aurora firmware ends in March, according to the vendor.",
]
ZH_FILLER = [
    "网关重启之后，边缘设备的消息在队列里积压了大约十分钟。",
    "请问怎样配置消费者组，才能在分区增加时不丢消息？",
    "我们把模型量化到四比特，大部分客服问题依然回答得很准确。",
    "昨天的告警显示死信主题在一小时内收到了二十多条消息。",
    "升级之后监控面板上看不到队列深度了，需要重新配置数据源。",
    "设备断网一个小时后恢复连接，缓存的消息按顺序全部发送成功。",
    "云端工作进程只有在回复被确认之后才提交偏移量，这样不会丢数据。",
    "请帮我解释一下为什么保留策略设置为七天就足够用于重放。",
]


def _luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    total = 0
    for i, d in enumerate(reversed(body)):
        n = int(d)
        total += n * 2 - 9 if i % 2 == 0 and n > 4 else n * 2 if i % 2 == 0 else n
    return body + str((10 - total % 10) % 10)


def cn_id(rng: random.Random) -> str:
    """A resident id number with a valid MOD 11-2 check character."""
    from cloud.ingest.core.pii import cn_id_check_char  # noqa: PLC0415

    first17 = (f"{rng.choice(['110105', '310104', '440305', '510107'])}{rng.randint(1950, 2005)}"
               f"{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randint(0, 999):03d}")
    return first17 + cn_id_check_char(first17)


def _values(rng: random.Random) -> dict[str, Any]:
    card = _luhn_complete(rng.choice(["4", "51", "37"]), 16, rng)
    return {
        "name": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
        "cn_name": rng.choice(CN_SURNAME) + "".join(rng.choice(CN_GIVEN) for _ in range(rng.randint(1, 2))),
        "email": f"{rng.choice(FIRST).lower()}.{rng.choice(LAST).lower()}{rng.randint(1, 99)}@"
                 f"{rng.choice(['example.com', 'acme.io', 'mail.cn', 'corp.net'])}",
        "phone": f"+1 {rng.randint(201, 989)}-{rng.randint(200, 999)}-{rng.randint(0, 9999):04d}",
        "cn_mobile": f"1{rng.choice('3456789')}{rng.randint(0, 9)}{rng.randint(0, 99_999_999):08d}",
        "cn_id": cn_id(rng),
        "ip": f"{rng.choice([10, 172, 192, 203])}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        "card": " ".join(card[i:i + 4] for i in range(0, 16, 4)),
        "key": rng.choice([
            "sk-" + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(40)),
            "AKIA" + "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(16)),
            "ghp_" + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(36)),
        ]),
        "token": "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(32)),
    }


EN_PII = [
    ("My name is {name} and my email is {email}.", {"name": "PERSON", "email": "EMAIL_ADDRESS"}),
    ("You can reach {name} at {phone} during office hours.", {"name": "PERSON", "phone": "PHONE_NUMBER"}),
    ("The server at {ip} rejected the connection.", {"ip": "IP_ADDRESS"}),
    ("I paid with card {card} but the invoice never arrived.", {"card": "CREDIT_CARD"}),
    ("Our key {key} leaked into the logs, please rotate it.", {"key": "API_KEY"}),
    ("The request carried Authorization: Bearer {token} in its headers.", {"token": "API_KEY"}),
    ("{name} reported the outage first.", {"name": "PERSON"}),
    ("Send the report to {email} before Friday.", {"email": "EMAIL_ADDRESS"}),
]
ZH_PII = [
    ("联系人：{cn_name}，手机号{cn_mobile}。", {"cn_name": "PERSON", "cn_mobile": "CN_MOBILE"}),
    ("我的身份证号是{cn_id}，请帮我查询订单。", {"cn_id": "CN_RESIDENT_ID"}),
    ("服务器{ip}拒绝了连接请求。", {"ip": "IP_ADDRESS"}),
    ("请发邮件到{email}，我们会尽快回复。", {"email": "EMAIL_ADDRESS"}),
    ("客户{cn_name}反馈说手机{cn_mobile}收不到验证码。", {"cn_name": "PERSON", "cn_mobile": "CN_MOBILE"}),
    ("密钥{key}被写进了日志，请立即更换。", {"key": "API_KEY"}),
]


def _fill(template: str, labels: dict[str, str], values: dict[str, Any], offset: int) -> tuple[str, list[Any]]:
    out, spans, pos = "", [], 0
    while (start := template.find("{", pos)) >= 0:
        end = template.index("}", start)
        out += template[pos:start]
        field = template[start + 1:end]
        spans.append([offset + len(out), offset + len(out) + len(values[field]), labels[field]])
        out += values[field]
        pos = end + 1
    return out + template[pos:], spans


def document(rng: random.Random, lang: str, target_bytes: int = 1000) -> dict[str, Any]:
    """One ~1 KB document: filler sentences with 0-3 PII sentences at random places."""
    filler, pii, sep = (EN_FILLER, EN_PII, " ") if lang == "en" else (ZH_FILLER, ZH_PII, "")
    slots = rng.sample(range(8), rng.choice([0, 1, 2, 2, 3]))
    text, spans, i = "", [], 0
    while len(text.encode()) < target_bytes:
        piece = text + (sep if text else "")
        if i in slots:
            sentence, found = _fill(*rng.choice(pii), _values(rng), len(piece))
            spans.extend(found)
        else:
            sentence = rng.choice(filler)
        text = piece + sentence
        i += 1
    return {"lang": lang, "text": text, "spans": spans}


def corpus(n: int, seed: int = 6) -> list[dict[str, Any]]:
    """`n` documents, half English and half Chinese."""
    rng = random.Random(seed)
    return [document(rng, "en" if i % 2 == 0 else "zh") for i in range(n)]


if __name__ == "__main__":
    out, count = Path(sys.argv[1]), int(sys.argv[2])
    out.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in corpus(count)), encoding="utf-8")
