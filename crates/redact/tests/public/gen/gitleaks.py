# Transcribed from gitleaks/gitleaks cmd/generate/config/rules/*.go: the literal true
# positives (r.TPs / tps string literals; randomly generated ones cannot be reproduced and
# are left out) and false positives (fps) that are placeholders or not credentials at all.
# Each TP: (rule file@commit, text, [secret values inside the text]).
A = "aws.go@0b3e675886829867703d7060b2451d0b7155db7d"
S = "slack.go@02788fb5ec7f20b962f5e01437f4baacbca3e8fa"
O = "openai.go@09eba9f67a17a5d01f0eb8c431e3a1eda676ffc5"
AN = "anthropic.go@71ab52c7c3bf6409baedfc07e67874855db54ced"
J = "jwt.go@08c6d3cf5924853ef6039b7a73091359bc22e00d"
G = "gcp.go@0073de5a24273e92d30afb5dac07f3a7d600c9d2"
H = "huggingface.go@02788fb5ec7f20b962f5e01437f4baacbca3e8fa"
P = "privatekey.go@00639b2ad719a17dab59de304b839b4a30ab05e3"
GQ = "groq.go@90039844123c1cd7831d55edf468633415730f17"
OP = "1password.go@02788fb5ec7f20b962f5e01437f4baacbca3e8fa"
GL = "gitlab.go@09eba9f67a17a5d01f0eb8c431e3a1eda676ffc5"

def q(key, tok):
    return (f'"{key}": "{tok}"', [tok])

JWT = "eyJhbGciOieeeiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwic3ViZSI6IjEyMzQ1Njc4OTAiLCJuYW1lZWEiOiJKb2huIERvZSIsInN1ZmV3YWZiIjoiMTIzNDU2Nzg5MCIsIm5hbWVmZWF3ZnciOiJKb2huIERvZSIsIm5hbWVhZmV3ZmEiOiJKb2huIERvZSIsInN1ZndhZndlYWIiOiIxMjM0NTY3ODkwIiwibmFtZWZ3YWYiOiJKb2huIERvZSIsInN1YmZ3YWYiOiIxMjM0NTY3ODkwIiwibmFtZndhZSI6IkpvaG4gRG9lIiwiaWZ3YWZhYXQiOjE1MTYyMzkwMjJ9.a_5icKBDo-8EjUlrfvz2k2k-FYaindQ0DEYNrlsnRG0"
PEM1 = """-----BEGIN PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAVwAAAAdzc2gtcnNhAAAAAwEAAQAAAEEAqPfgaTEWEP3S9w0tgsicURfo+nLW09/0KfOPinhYZ4ouzU+3xC4plEp8Ut9FgL0AgqNslNaK34Kq+NZjO9DAQAAATB+9/CSfvfwkgAAAAdzc2gtcnNhAAAAQQCo9+BpMRYQ/dL3DS2CyJxRF+j6ctbT3/Qp84+KeFhnii7NT7fELilKUSnxS30WAvQCCo2yU1orfgqr41mM70MBAAAAAwEAAQAAAEAgkuLEHLaqkWhLgNKagSajeobLS3rPT0Agm0f7k55FXVt743hwNgkp98bMNrzy9AQ1mJGbQZGrpr4c8ZAx3aRNAAAAIBOs/5OiPgoTdSy7bcF9IGpSE8ZgGKzgYQVZeN97YE00AAAAIQCjEr8yAZ54u6Lfzkontk5iS2OEsE0AHr18rBNkWxQ2HQAAACEBCUEaRQnMnbp79mxDXDf6AU0cN/RPBjb9qSHDcWZHGzUAAAAXcGhwc2VjbGliLWdlbmVyYXRlZC1rZXkBAgME
-----END PRIVATE KEY-----"""
RSA_BODY = "MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8QuKUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQJAIJLixBy2qpFoS4DSmoEmo3qGy0t6z09AIJtH+5OeRV1be+N4cDYJKffGzDa88vQENZiRm0GRq6a+HPGQMd2kTQIhAKMSvzIBnni7ot/OSie2TmJLY4SwTQAevXysE2RbFDYdAiEBCUEaRQnMnbp79mxDXDf6AU0cN/RPBjb9qSHDcWZHGzUCIG2Es59z8ugGrDY+pxLQnwfotadxd+Uyv/Ow5T0q5gIJAiEAyS4RaI9YG8EWx/2w0T67ZUVAw8eOMB6BIUg0Xcu+3okCIBOs/5OiPgoTdSy7bcF9IGpSE8ZgGKzgYQVZeN97Y=="
PEM2 = "-----BEGIN RSA PRIVATE KEY-----\n" + RSA_BODY + "\n-----END RSA PRIVATE KEY-----"

def tok(t):
    return (t, [t])

TPS = [
(A, *tok("AKIALALEMEL33243OLIB")),
(S, *q("bot_token1", "xoxb-781236542736-2364535789652-GkwFDQoHqzXDVsC6GzqYUypD")),
(S, *q("bot_token2", "xoxb-263594206564-2343594206574-FGqddMF8t08v8N7Oq4i57vs1MBS")),
(S, *q("bot_token3", "xoxb-4614724432022-5152386766518-O5WzjWGLG0wcCm2WPrjEmnys")),
(S, *q("user_token1", "xoxp-41684372915-1320496754-45609968301-e708ba56e1517a99f6b5fb07349476ef")),
(S, *q("user_token2", "xoxp-283316862324-298911817009-298923149681-44f585044dace54f5701618e97cd1c0b")),
(S, *q("user_token3", "xoxp-11873098179-111402824422-234336993777-b96c9fb3b69f82ebb79d12f280779de1")),
(S, *q("user_token4", "xoxp-254112160503-252950188691-252375361712-6cbf56aada30951a9d310a5f23d032a0")),
(S, *q("user_token5", "xoxp-4614724432022-4621207627011-5182682871568-1ddad9823e8528ad0f4944dfa3c6fc6c")),
(S, '"url_private": "https:\\/\\/files.slack.com\\/files-pri\\/T04MCQMEXQ9-F04MAA1PKE3\\/image.png?t=xoxe-4726837507825-4848681849303-4856614048758-e0b1f3d4cb371f92260edb0d9444d206"', ["xoxe-4726837507825-4848681849303-4856614048758-e0b1f3d4cb371f92260edb0d9444d206"]),
(S, *q("token1", "xapp-1-A052FGTS2DL-5171572773297-610b6a11f4b7eb819e87b767d80e6575a3634791acb9a9ead051da879eb5b55e")),
(S, *q("token2", "xapp-1-IEMF8IMY1OQ-4037076220459-85c370b433e366de369c4ef5abdf41253519266982439a75af74a3d68d543fb6")),
(S, *q("token3", "xapp-1-BM3V7LC51DA-1441525068281-86641a2582cd0903402ab523e5bcc53b8253098c31591e529b55b41974d2e82f")),
(S, *q("access_token1", "xoxe.xoxp-1-Mi0yLTM0MTQwNDE0MDE3Ni0zNjU5NDY0Njg4MTctNTE4MjA3NTQ5NjA4MC01NDEyOTYyODY5NzUxLThhMTBjZmI1ZWIzMGIwNTg0ZDdmMDI5Y2UxNzVlZWVhYzU2ZWQyZTZiODNjNDZiMGUxMzRlNmNjNDEwYmQxMjQ")),
(S, *q("access_token2", "xoxe.xoxp-1-Mi0yLTMxNzcwMjQ0MTcxMy0zNjU5NDY0Njg4MTctNTE1ODE1MjY5MTcxNC01MTU4MDI0MTgyOTc5LWRmY2YwY2U4ODhhNzY5ZGU5MTAyNDU4MDJjMGQ0ZDliMTZhMjNkMmEyYzliNjkzMDRlN2VjZTI4MWNiMzRkNGQ")),
(S, *q("access_token4", "xoxe.xoxb-1-Mi0yLTMxNzcwMjQ0MTcxMy0zNjU5NDY0Njg4MTctNTE1ODE1MjY5MTcxNC01MTU4MDI0MTgyOTc5LWRmY2YwY2U4ODhhNzY5ZGU5MTAyNDU4MDJjMGQ0ZDliMTZhMjNkMmEyYzliNjkzMDRlN2VjZTI4MWNiMzRkNGQ")),
(S, *q("refresh_token1", "xoxe-1-My0xLTMxNzcwMjQ0MTcxMy01MTU4MTUyNjkxNzE0LTUxODE4NDI0MDY3MzYtMjA5MGFkOTFlZThkZWE2OGFlZDYwYWJjODNhYzAxYjA5ZjVmODBhYjgzN2QyNDdjOTNlOGY5NTg2YWM1OGM4Mg")),
(S, *q("refresh_token2", "xoxe-1-My0xLTM0MTQwNDE0MDE3Ni01MTgyMDc1NDk2MDgwLTU0MjQ1NjIwNzgxODEtNGJkYTZhYTUxY2M1ODk3ZTNkN2YzMTgxMDI1ZDQzNzgwNWY4NWQ0ODdhZGIzM2ViOGI0MTM0MjdlNGVmYzQ4Ng")),
(S, *q("bot_token1", "xoxb-263594206564-FGqddMF8t08v8N7Oq4i57vs1")),
(S, *q("bot_token2", "xoxb-282029623751-BVtmnS3BQitmjZvjpQL7PSGP")),
(S, *q("bot_token3", "xoxb-47834520726-N3otsrwj8Cf99cs8GhiRZsX1")),
(S, *q("bot_token4", "xoxb-123456789012-Xw937qtWSXJss1lFaKe")),
(S, *q("bot_token5", "xoxb-312554961652-uSmliU84rFhnUSBq9YdKh6lS")),
(S, *q("bot_token6", "xoxb-51351043345-Lzwmto5IMVb8UK36MghZYMEi")),
(S, *q("bot_token7", "xoxb-130154379991-ogFL0OFP3w6AwdJuK7wLojpK")),
(S, *q("bot_token8", "xoxb-159279836768-FOst5DLfEzmQgkz7cte5qiI")),
(S, *q("bot_token9", "xoxb-50014434-slacktokenx29U9X1bQ")),
(S, *q("access_token", "xoxa-2-511111111-31111111111-3111111111111-e039d02840a0b9379c")),
(S, *q("access_token1", "xoxs-3206092076-3204538285-3743137121-836b042620")),
(S, *q("access_token2", "xoxs-416843729158-132049654-5609968301-e708ba56e1")),
(S, *q("access_token3", "xoxs-420083410720-421837374423-440811613314-977844f625b707d5b0b268206dbc92cbc85feef3e71b08e44815a8e6e7657190")),
(S, *q("access_token4", "xoxs-4829527689-4829527691-4814341714-d0346ec616")),
(S, *q("access_token5", "xoxs-155191149137-155868813314-338998331396-9f6d235915")),
(S, *q("access_token7", "xoxo-523423-234243-234233-e039d02840a0b9379c")),
(S, "http://hooks.slack.com/services/T024TTTTT/BBB72BBL/AZAAA9u0pA4ad666eMgbi555", ["T024TTTTT/BBB72BBL/AZAAA9u0pA4ad666eMgbi555"]),
(S, "https://hooks.slack.com/services/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", ["T0DCUJB1Q/B0DD08H5G/bJtrpFi1fO1JMCcwLx8uZyAg"]),
(S, "https://hooks.slack.com/workflows/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", ["T016M3G1GHZ/A04J3BAF7AA/442660231806210747/F6Vm03reCkhPmwBtaqbN6OW9"]),
(S, "http://hooks.slack.com/workflows/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", ["T2H71EFLK/A047FK946NN/430780826188280067/LfFz5RekA2J0WOGJyKsiOjjg"]),
(O, *tok("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")),
(O, *tok("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")),
(O, *tok("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")),
(O, *tok("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")),
(O, *tok("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")),
(O, *tok("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")),
(O, *tok("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")),
(O, *tok("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")),
(O, *tok("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")),
(AN, *tok("sk-ant-api03-abc123xyz-456def789ghij-klmnopqrstuvwx-3456yza789bcde-1234fghijklmnopby56aaaogaopaaaabc123xyzAA")),
(AN, *tok("sk-ant-admin01-abc12fake-456def789ghij-klmnopqrstuvwx-3456yza789bcde-12fakehijklmnopby56aaaogaopaaaabc123xyzAA")),
(J, JWT + "==", [JWT + "=="]),
(J, "JWT := " + JWT, [JWT]),
(G, *tok("AIzaSyNHxIf32IQ1a1yjl3ZJIqKZqzLAK1XhDk-")),
(H, "huggingface-cli login --token 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", ["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"]),
(H, "huggingface-cli login --token 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", ["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"]),
(H, "huggingface-cli login --token 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", ["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"]),
(H, "huggingface-cli login --token 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", ["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"]),
(H, "huggingface-cli login --token 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", ["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"]),
(H, "huggingface-cli login --token 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", ["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"]),
(H, "huggingface-cli login --token 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", ["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"]),
(H, "huggingface-cli login --token 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", ["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"]),
(H, '-H "Authorization: Bearer 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"', ["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"]),
(H, "DEV=1 HF_TOKEN=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 poetry run python app.py", ["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"]),
(H, "use_auth_token='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')", ["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"]),
(H, 'CI_HUB_USER_TOKEN = "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"', ["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"]),
(H, '- Change line 5 and add your Hugging Face token, that is, instead of \'hf_token = "ADD_YOUR_HUGGING_FACE_TOKEN_HERE"\', you will need to change it to something like\'hf_token = "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"\'', ["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"]),
(H, '    parser.add_argument("--hf_token", type=str, default=\'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\', help="Hugging Face Access Token to access PyAnnote gated models")', ["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"]),
(H, *tok("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")),
(H, "`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`", ["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"]),
(H, "\\'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'\\", ["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"]),
(H, 'hf_token = "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"  # Intentionally revealing this key for testing purposes', ["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"]),
(H, '"news_train_dataset = datasets.load_dataset(\'nlpHakdang/aihub-news30k\',  data_files = \\"train_news_text.csv\\", use_auth_token=\'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\')\\n",', ["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"]),
(H, "os.environ['HUGGINGFACEHUB_API_TOKEN'] = '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'", ["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"]),
(P, PEM1, [PEM1]),
(P, PEM2, [PEM2]),
(P, *tok(RSA_BODY)),
(OP, *tok("A3-ASWWYB-798JRYLJVD4-23DC2-86TVM-H43EB")),
(OP, *tok("A3-ASWWYB-798JRY-LJVD4-23DC2-86TVM-H43EB")),
]
FPS = [
(A, "key = AKIAXXXXXXXXXXXXXXXX"),
(A, "aws_access_key: AKIAIOSFODNN7EXAMPLE"),
(A, 'msgstr "Näytä asiakirjamallikansio."'),
(A, "TODAYINASIAASACKOFRICEFELLOVER"),
(S, "xoxb-xxxxxxxxx-xxxxxxxxxx-xxxxxxxxxxxx"),
(S, "xoxb-xxx"),
(S, "xoxb-12345-abcd234"),
(S, "xoxb-xoxb-my-bot-token"),
(S, "https://docs.google.com/document/d/1W7KCxOxP-1Fy5EyF2lbJGE2WuKmu5v0suYqoHas1jRM"),
(S, '"token1": "xoxp-1234567890"'),
(S, '"token2": "xoxp-XXXXXXXXXX-XXXXXXXXXX-XXXXXXXXXXX-XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"'),
(S, '"token4": "xoxp-572370529330-573807301142-572331691188-####################"'),
(S, "xoxe.xoxp-1-SlackAppConfigurationAccessTokenHere"),
(S, "xoxe.xoxp-1-RANDOMSTRINGHERE"),
(S, "xoxe.xoxp-1-initial"),
(S, "xoxe-1-xxx"),
(S, "XOxE-RROAmw, Home and Garden, 5:24, 20120323"),
(S, "xoxb-xxxxxxxxxxx-xxxxxxxxxxxxxxxxxxxxxxxx"),
(S, "xoxb-Slack_BOT_TOKEN"),
(S, "xoxb-abcdef-abcdef"),
(S, "https://github.com/xoxa-nyc/xoxa-nyc.github.io/blob/master/README.md"),
(S, "https://indieweb.org/images/3/35/2018-250-xoxo-indieweb-1.jpg"),
(AN, 'anthropic_token = "sk-ant-oat01-tooShort"'),
(AN, 'anthropic_token = "sk-ant-ort01-tooShort"'),
(G, 'apiKey: "AIzaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"'),
(H, "- (id)hf_requiredCharacteristicTypesForDisplayMetadata;"),
(H, 'amazon.de#@#div[data-cel-widget="desktop-rhf_SponsoredProductsRemoteRHFSearchEXPSubsK2ClickPagination"]'),
(H, "                            _kHMSymptomhf_generatedByHomeAppForDebuggingPurposesKey,"),
(H, "    #define OSCHF_DebugGetExpectedAverageCrystalAmplitude NOROM_OSCHF_DebugGetExpectedAverageCrystalAmplitude"),
(H, "  M_UINT       (ServingCellPriorityParametersDescription_t,  H_PRIO,  2, &hf_servingcellpriorityparametersdescription_h_prio),"),
(H, "public static final String API_ORG_EXIST = \"APIOrganizationExist\";"),
(H, "const api_org_controller = require('../../controllers/api/index').organizations;"),
(H, 'API_ORG_CREATE("https://qyapi.weixin.qq.com/cgi-bin/department/create?access_token=ACCESS_TOKEN"),'),
(H, "<p>You should see a token <code>hf_xxxxx</code> (old tokens are <code>api_XXXXXXXX</code> or <code>api_org_XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX</code>).</p>"),
(GQ, "GSK_API_KEY=gsk_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
(OP, "A3-XXXXXX-XXXXXXXXXXX-XXXXX-XXXXX-XXXXX"),
(OP, "A3-xXXXXX-XXXXXX-XXXXX-XXXXX-XXXXX-XXXXX"),
(GL, "glpat-XXXXXXXXXXX-XXXXXXXX"),
(GL, "glpat-xxxxxxxx-xxxxxxxxxxxxxxxxxx.xxxxxxxxx"),
(GL, "glptt-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
(GL, "GR134894112312312312312312312"),
(GL, "GR1348941XXXXXXXXXXXXXXXXXXXX"),
(GL, "glrt-tx_xxxxxxxxxxxxxxxxxxxxxxxxxxx.xxxxxxxxx"),
]
