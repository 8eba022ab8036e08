from __future__ import annotations

from feishu.content import message_text


def test_it_reads_text_messages():
    assert message_text("text", {"text": "你好"}) == "你好"


def test_it_flattens_rich_text_posts_in_either_shape():
    paragraphs = [
        [{"tag": "text", "text": "第一行 :"}, {"tag": "at", "user_id": "ou_x", "user_name": "tom"}],
        [{"tag": "a", "text": "查看详情", "href": "https://example.com"}, {"tag": "img", "image_key": "k"}],
    ]
    assert message_text("post", {"title": "标题", "content": paragraphs}) == "标题\n第一行 :@tom\n查看详情[img]"
    assert message_text("post", {"zh_cn": {"title": "标题", "content": paragraphs}}).startswith("标题\n第一行")


def test_it_collects_the_text_of_cards():
    card = {
        "header": {"title": {"tag": "plain_text", "content": "告警"}},
        "elements": [
            {"tag": "div", "text": {"tag": "lark_md", "content": "**CPU** 90%"}},
            {"tag": "action", "actions": [{"tag": "button", "text": {"tag": "plain_text", "content": "处理完成"}}]},
        ],
    }
    assert message_text("interactive", card) == "告警\n**CPU** 90%\n处理完成"
    assert message_text("interactive", {"elements": []}) == "[card]"


def test_other_types_are_named():
    assert message_text("image", {"image_key": "img_1"}) == "[image]"
